//! What the kernel has, read independently of kleene: links and addresses (`ip -j`), routes,
//! namespace pins, cgroup directories and the BPF programs attached to them.

use serde_json::Value;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One link of a namespace, with its addresses.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub ifindex: u64,
    /// `ip -d`'s `info_kind` (bridge, veth, dummy, ifb, ...).
    pub kind: Option<String>,
    pub master: Option<String>,
    pub up: bool,
    /// The interface group, as `ip` prints it (a number unless /etc/iproute2/group names it).
    pub group: Option<String>,
    /// For a veth: the ifindex of its peer (in the peer's namespace).
    pub peer_index: Option<u64>,
    /// Addresses with prefix length, except link-local and host-scope ones.
    pub global: Vec<(IpAddr, u8)>,
}

/// `ip -j ARGS` run inside the namespace pinned at `netns`.
pub fn ip_json(netns: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["--", "ip", "-j"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip -j {} in {}: {}",
            args.join(" "),
            netns.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).map_err(|e| format!("ip -j {}: bad JSON: {e}", args.join(" ")))
}

/// Every link of the namespace pinned at `netns`.
pub fn links(netns: &Path) -> Result<Vec<Link>, String> {
    let doc = ip_json(netns, &["-d", "addr", "show"])?;
    Ok(doc.as_array().into_iter().flatten().map(link_of).collect())
}

fn link_of(l: &Value) -> Link {
    let s = |k: &str| l[k].as_str().map(String::from);
    let flags: Vec<&str> = l["flags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let global = l["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .filter_map(|a| Some((a["local"].as_str()?.parse().ok()?, a["prefixlen"].as_u64()? as u8)))
        .collect();
    Link {
        name: s("ifname").unwrap_or_default(),
        ifindex: l["ifindex"].as_u64().unwrap_or(0),
        kind: l["linkinfo"]["info_kind"].as_str().map(String::from),
        master: s("master"),
        up: flags.contains(&"UP"),
        group: s("group"),
        peer_index: l["link_index"].as_u64().filter(|_| l.get("link_netnsid").is_some()),
        global,
    }
}

/// Default routes of one family in the namespace: (gateway, device).
pub fn default_routes(netns: &Path, v6: bool) -> Result<Vec<(Option<IpAddr>, String)>, String> {
    let family = if v6 { "-6" } else { "-4" };
    let doc = ip_json(netns, &[family, "route", "show", "default"])?;
    Ok(doc
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["gateway"].as_str().and_then(|g| g.parse().ok()), r["dev"].as_str().unwrap_or("").to_string()))
        .collect())
}

/// Whether `path` is a mounted namespace file (nsfs), as a live pin is.
pub fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a properly sized out-parameter.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == NSFS_MAGIC }
}

/// The mount point of the cgroup2 hierarchy (not always /sys/fs/cgroup: hybrid hosts mount
/// it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// The BPF attach types kleene's ipnet driver uses, with the name its program carries.
pub const IPNET_HOOKS: [(u32, &str); 7] = [
    (8, "kl_ipnet_bind4"),
    (9, "kl_ipnet_bind6"),
    (10, "kl_ipnet_conn4"),
    (11, "kl_ipnet_conn6"),
    (14, "kl_ipnet_send4"),
    (15, "kl_ipnet_send6"),
    (2, "kl_ipnet_sock"),
];

/// Names of the programs attached directly to the cgroup `dir` at `attach_type`.
pub fn attached_programs(dir: &Path, attach_type: u32) -> Result<Vec<String>, String> {
    let cg = File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let ids = bpf::query(&cg, attach_type).map_err(|e| format!("BPF_PROG_QUERY on {}: {e}", dir.display()))?;
    ids.into_iter().map(|id| bpf::prog_name(id).map_err(|e| format!("BPF program {id}: {e}"))).collect()
}

/// Which of `addrs` a process in `cgroup` (and in the namespace pinned at `netns`) may bind
/// (port 0, TCP). The probe is a child that moves itself into the cgroup and tries each
/// bind before exec'ing `true`: a process start, not an interpreter's.
pub fn bind_probe(netns: &Path, cgroup: &Path, addrs: &[IpAddr]) -> Result<Vec<bool>, String> {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let ns = File::open(netns).map_err(|e| format!("cannot open {}: {e}", netns.display()))?;
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_encoded_bytes())
        .map_err(|e| e.to_string())?;
    let targets: Vec<(libc::sockaddr_storage, libc::socklen_t)> = addrs.iter().map(|a| sockaddr(*a)).collect();
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (ns_fd, out_fd) = (ns.as_raw_fd(), writer.as_raw_fd());
    let mut cmd = Command::new("true");
    // SAFETY: between fork and exec the child only makes system calls on memory prepared
    // before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let f = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if f < 0 || libc::write(f, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            for (sa, len) in &targets {
                let s = libc::socket(libc::c_int::from(sa.ss_family), libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                let ok = s >= 0 && libc::bind(s, (sa as *const libc::sockaddr_storage).cast(), *len) == 0;
                libc::write(out_fd, [u8::from(ok)].as_ptr().cast(), 1);
                libc::close(s);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("bind probe in {}: {e}", cgroup.display()))?;
    drop(writer);
    let mut results = Vec::new();
    reader.read_to_end(&mut results).map_err(|e| e.to_string())?;
    let _ = child.wait();
    if results.len() != addrs.len() {
        return Err(format!("bind probe in {} answered {} of {}", cgroup.display(), results.len(), addrs.len()));
    }
    Ok(results.into_iter().map(|b| b == 1).collect())
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed, and large enough for both.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match ip {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from(a).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The few bpf(2) calls the checker needs (no bpftool on a minimal host).
mod bpf {
    use super::*;
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_PROG_QUERY: libc::c_long = 16;

    fn call<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
        // SAFETY: `attr` is a live #[repr(C)] bpf_attr variant and its exact size is passed.
        let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
    }

    pub fn query(cgroup: &File, attach_type: u32) -> io::Result<Vec<u32>> {
        let mut ids = [0u32; 64];
        let mut attr = Query {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        call(BPF_PROG_QUERY, &mut attr)?;
        Ok(ids[..attr.prog_cnt as usize].to_vec())
    }

    #[repr(C)]
    #[derive(Default)]
    struct ById {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }

    /// `struct bpf_prog_info` up to `name`: the kernel fills only what is asked for.
    #[repr(C)]
    #[derive(Default)]
    struct ProgInfo {
        prog_type: u32,
        id: u32,
        tag: [u8; 8],
        jited_prog_len: u32,
        xlated_prog_len: u32,
        jited_prog_insns: u64,
        xlated_prog_insns: u64,
        load_time: u64,
        created_by_uid: u32,
        nr_map_ids: u32,
        map_ids: u64,
        name: [u8; 16],
    }

    pub fn prog_name(id: u32) -> io::Result<String> {
        let fd = call(BPF_PROG_GET_FD_BY_ID, &mut ById { prog_id: id, ..Default::default() })?;
        // SAFETY: the kernel just returned this fd and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut info = ProgInfo::default();
        let mut attr = InfoByFd {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<ProgInfo>() as u32,
            info: &mut info as *mut ProgInfo as u64,
        };
        call(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        let end = info.name.iter().position(|&b| b == 0).unwrap_or(info.name.len());
        Ok(String::from_utf8_lossy(&info.name[..end]).into_owned())
    }
}
