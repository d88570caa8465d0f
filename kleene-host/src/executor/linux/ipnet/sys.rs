//! The bpf(2) system call, for exactly what the ipnet driver does with it: load a
//! program, attach it to a cgroup (replacing its own earlier one), and find what is
//! attached. Raw syscalls on `#[repr(C)]` prefixes of `union bpf_attr`, so no libbpf.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libc::c_long;

use super::asm::Insn;

// `enum bpf_prog_type`.
pub const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
pub const BPF_PROG_TYPE_CGROUP_SOCK: u32 = 9;
pub const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;

// `enum bpf_attach_type`.
pub const BPF_CGROUP_INET_INGRESS: u32 = 0;
pub const BPF_CGROUP_INET_SOCK_CREATE: u32 = 2;
pub const BPF_CGROUP_INET4_BIND: u32 = 8;
pub const BPF_CGROUP_INET6_BIND: u32 = 9;
pub const BPF_CGROUP_INET4_CONNECT: u32 = 10;
pub const BPF_CGROUP_INET6_CONNECT: u32 = 11;
pub const BPF_CGROUP_UDP4_SENDMSG: u32 = 14;
pub const BPF_CGROUP_UDP6_SENDMSG: u32 = 15;

// Commands.
const BPF_PROG_LOAD: c_long = 5;
const BPF_PROG_ATTACH: c_long = 8;
const BPF_PROG_GET_FD_BY_ID: c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: c_long = 15;
const BPF_PROG_QUERY: c_long = 16;

const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
const BPF_F_REPLACE: u32 = 1 << 2;

/// BPF_CGROUP_MAX_PROGS: the most programs one hook of a cgroup can hold.
const MAX_PROGS: usize = 64;

fn bpf<T>(cmd: c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] bpf_attr variant and
    // its exact size is passed, so the kernel reads/writes only within it.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn bpf_fd<T>(cmd: c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bad fd from bpf(2)"))?;
    // SAFETY: the kernel just returned this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn raw_fd(f: &impl AsRawFd) -> u32 {
    // fds are non-negative.
    f.as_raw_fd() as u32
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// What the kernel needs to know about a program besides its instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// `enum bpf_attach_type`.
    pub attach_type: u32,
    /// Program name (at most 15 bytes): how the driver recognises its own
    /// programs among others attached to the same cgroup.
    pub name: &'static str,
}

/// Load `insns` through the verifier; on rejection the error carries the verifier's log.
pub fn load(hook: Hook, insns: &[Insn]) -> io::Result<OwnedFd> {
    match load_with_log(hook, insns, &mut []) {
        Ok(fd) => Ok(fd),
        // Load again with the verifier log to explain the failure.
        Err(_) => {
            let mut log = vec![0u8; 1 << 16];
            let err = load_with_log(hook, insns, &mut log).expect_err("verifier is deterministic");
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(err.kind(), format!("loading {}: {err}\n{log}", hook.name)))
        }
    }
}

fn load_with_log(hook: Hook, insns: &[Insn], log: &mut [u8]) -> io::Result<OwnedFd> {
    let license = CString::new("GPL").expect("no NUL");
    let mut name = [0u8; 16];
    let n = hook.name.as_bytes();
    name[..n.len()].copy_from_slice(n);
    let mut attr = ProgLoadAttr {
        prog_type: hook.prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        // All three log fields must be zero when no log is wanted.
        log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
        prog_name: name,
        expected_attach_type: hook.attach_type,
        ..Default::default()
    };
    bpf_fd(BPF_PROG_LOAD, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Attach `prog` to the cgroup `dir` at `attach_type`, atomically in place of `replace`.
pub fn attach(dir: &File, attach_type: u32, prog: &OwnedFd, replace: Option<&OwnedFd>) -> io::Result<()> {
    // ALLOW_MULTI keeps programs of other owners (and of parent cgroups)
    // running alongside ours.
    let mut attr = AttachAttr {
        target_fd: raw_fd(dir),
        attach_bpf_fd: raw_fd(prog),
        attach_type,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    if let Some(old) = replace {
        attr.attach_flags |= BPF_F_REPLACE;
        attr.replace_bpf_fd = raw_fd(old);
    }
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the programs attached directly to the cgroup `dir` at `attach_type`.
pub fn query(dir: &File, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_fd: raw_fd(dir),
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGS as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..attr.prog_cnt as usize].to_vec())
}

/// The program named like `hook` attached directly to the cgroup `dir` at its hook.
pub fn find_attached(dir: &File, hook: Hook) -> io::Result<Option<OwnedFd>> {
    for id in query(dir, hook.attach_type)? {
        let fd = match prog_fd_by_id(id) {
            Ok(fd) => fd,
            // Detached between query and open.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        if prog_name(&fd)? == hook.name {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr { prog_id: id, ..Default::default() };
    bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Prefix of `struct bpf_prog_info` up to and including `name`; the kernel
/// fills only as much as we ask for.
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

fn prog_name(fd: &OwnedFd) -> io::Result<String> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: raw_fd(fd),
        info_len: size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&info.name[..end]).into_owned())
}
