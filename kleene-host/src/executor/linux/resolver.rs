//! Container DNS on Linux: the resolver's files and process (aardvark-dns), and the
//! containers' resolv.conf files, brought to what state says after each committed change.
//!
//! Layout under `<run dir>/dns` (root's; the run dir itself is private):
//! - `resolv/<container id>.conf`: what `container exec` mounts on /etc/resolv.conf;
//! - `<scope>/`: one resolver's config directory, one file per network (named by its id),
//!   and `aardvark.pid`, the only file there the resolver may write;
//! - `<scope>.pid`: the resolver's pid as kleene verified it (root's; the resolver's own pid
//!   file is written by an unprivileged user and only ever read as a hint);
//! - `lock`: held while the files change and the resolver is signalled.
//!
//! Files are replaced atomically (written beside the directory, then renamed in: the
//! resolver reads every file in its directory, so nothing half-written may appear there).
//!
//! The resolver runs as `nobody`/`nogroup` with one capability, CAP_NET_BIND_SERVICE (it
//! binds port 53 on the gateways), as an ambient capability so it survives exec. Its working
//! directory is its config directory, opened as root before the switch, and it is told
//! `-c .`: it needs no path through the private run dir.

use crate::dns::{DnsConfig, NetworkFile, Probe, Scope};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where distributions install aardvark-dns (Debian: /usr/lib/podman).
const CANDIDATES: [&str; 3] =
    ["/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns", "/usr/local/libexec/podman/aardvark-dns"];

/// The port the resolver listens on, on each gateway.
const PORT: u16 = 53;

/// How long a command waits for the resolver to serve what it just wrote.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// The aardvark-dns binary: `KLEENE_AARDVARK_DNS` if set (an operator's build elsewhere;
/// the tests' "missing" case), else the first of the usual places that exists.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KLEENE_AARDVARK_DNS") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Bring the files and resolver processes under `run_dir` to `config`. Returns once every
/// resolver whose files changed answers according to them.
pub fn apply(run_dir: &Path, config: &DnsConfig) -> Result<()> {
    let dns = run_dir.join("dns");
    if config.files.is_empty() && config.resolv.is_empty() && !dns.exists() {
        return Ok(());
    }
    make_dir(&dns)?;
    let _lock = lock(&dns)?;
    sync_resolv(&dns, &config.resolv, config.verify_all)?;
    for scope in Scope::BOTH {
        match config.files.get(&scope).filter(|f| !f.is_empty()) {
            Some(files) => serve(&dns, scope, files, config.verify_all)?,
            None => stop(&dns, scope)?,
        }
    }
    Ok(())
}

/// Write one resolver's files; start it, or signal it if a file changed; wait until it
/// answers by the new files.
fn serve(dns: &Path, scope: Scope, files: &BTreeMap<String, NetworkFile>, config_verify: bool) -> Result<()> {
    let dir = dns.join(scope.name());
    make_dir(&dir)?;
    let running = Resolver::find(dns, scope);
    let mut probes = Vec::new();
    let mut changed = false;
    for (id, file) in files {
        let text = file.render();
        let old = fs::read_to_string(dir.join(id)).ok();
        if old.as_deref() != Some(text.as_str()) {
            replace(dns, &dir.join(id), &text)?;
            probes.push(file.probe(old.as_deref()));
            changed = true;
        } else if running.is_none() || config_verify {
            probes.push(file.probe(None));
        }
    }
    changed |= remove_others(&dir, |name| name == PID_HINT || files.contains_key(name))?;
    let started = Instant::now();
    let resolver = match running {
        Some(_) if !changed && !config_verify => return Ok(()),
        // Nothing changed: asked as it is, signalled only if it answers wrong (`confirm`).
        Some(r) if !changed => r,
        Some(r) => {
            r.signal(libc::SIGHUP)?;
            r
        }
        None => Resolver::spawn(dns, scope)?,
    };
    confirm(&resolver, &probes, started)
}

/// Wait until every probe gets its answer. A signal that arrives while the resolver is
/// between two configurations is lost (it re-arms only then), so it is sent again after a
/// while without the new answer.
fn confirm(resolver: &Resolver, probes: &[Probe], started: Instant) -> Result<()> {
    let mut last_signal = started;
    for probe in probes {
        loop {
            if ask(probe).is_ok_and(|answer| answer == probe.answer) {
                break;
            }
            if started.elapsed() > CONFIRM_WITHIN {
                bail!(
                    "the DNS resolver did not answer '{}' at {} as expected within {} s; see `kleene -v system reconcile`",
                    probe.name,
                    probe.server,
                    CONFIRM_WITHIN.as_secs()
                );
            }
            if last_signal.elapsed() > Duration::from_millis(300) {
                resolver.signal(libc::SIGHUP)?;
                last_signal = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    tracing::debug!("DNS resolver ({}) confirmed in {:?}", resolver.scope.name(), started.elapsed());
    Ok(())
}

/// Stop a resolver whose last network went, and empty its directory.
fn stop(dns: &Path, scope: Scope) -> Result<()> {
    if let Some(r) = Resolver::find(dns, scope) {
        r.terminate();
    }
    let _ = fs::remove_file(dns.join(format!("{}.pid", scope.name())));
    let dir = dns.join(scope.name());
    if dir.exists() {
        remove_others(&dir, |_| false)?;
    }
    Ok(())
}

/// The resolver's own pid file, in its directory (a hint only).
const PID_HINT: &str = "aardvark.pid";

/// A running resolver, verified to be ours.
struct Resolver {
    pid: libc::pid_t,
    scope: Scope,
}

impl Resolver {
    /// The resolver of `scope`, if one runs: the pid kleene recorded, still our binary with
    /// its working directory in our config directory (a reused pid is neither).
    fn find(dns: &Path, scope: Scope) -> Option<Resolver> {
        let recorded = dns.join(format!("{}.pid", scope.name()));
        let meta = fs::symlink_metadata(&recorded).ok()?;
        if crate::trust::check_owner_and_mode(&recorded, &meta).is_err() {
            tracing::warn!("ignoring {}: not root's alone", recorded.display());
            return None;
        }
        let pid: libc::pid_t = fs::read_to_string(&recorded).ok()?.trim().parse().ok()?;
        is_resolver(pid, &dns.join(scope.name())).then_some(Resolver { pid, scope })
    }

    /// Start the resolver of `scope` on the files in its directory, unprivileged. One that
    /// serves the directory without kleene's record of it (the record was lost) is stopped
    /// first: never two for one directory.
    fn spawn(dns: &Path, scope: Scope) -> Result<Resolver> {
        let bin = binary().ok_or_else(|| anyhow!(crate::dns::missing_resolver()))?;
        let dir = dns.join(scope.name());
        for pid in unrecorded(&dir) {
            tracing::warn!("stopping a {} DNS resolver kleene had lost track of (pid {pid})", scope.name());
            Resolver { pid, scope }.terminate();
        }
        let (uid, gid) = unprivileged_ids();
        // The one file it may write, made for it (the directory stays root's).
        let hint = dir.join(PID_HINT);
        let _ = fs::remove_file(&hint);
        fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&hint)?;
        std::os::unix::fs::chown(&hint, Some(uid), Some(gid))?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-c", ".", "-p", &PORT.to_string(), "run"])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if scope == Scope::Internal {
            cmd.env("AARDVARK_NO_PROXY", "1");
        }
        // SAFETY: only raw syscalls on values computed before fork.
        unsafe { cmd.pre_exec(move || drop_to(uid, gid)) };
        // aardvark-dns forks: the process we start exits once the server wrote its pid.
        let status = cmd.status().with_context(|| format!("cannot run {}", bin.display()))?;
        if !status.success() {
            bail!("{} exited with {status} (run it with -c {} run to see why)", bin.display(), dir.display());
        }
        let pid: libc::pid_t = fs::read_to_string(&hint)?.trim().parse().context("aardvark-dns wrote no pid")?;
        if !is_resolver(pid, &dir) {
            bail!("aardvark-dns reported pid {pid}, which is not the resolver kleene started");
        }
        let recorded = dns.join(format!("{}.pid", scope.name()));
        replace(dns, &recorded, &pid.to_string())?;
        tracing::info!("started the {} DNS resolver (pid {pid}, uid {uid})", scope.name());
        Ok(Resolver { pid, scope })
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        // SAFETY: kill with a verified pid.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            return Err(io::Error::last_os_error()).context("cannot signal the DNS resolver");
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it is still there after a second.
    fn terminate(self) {
        let _ = self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(1);
        while is_live(self.pid) {
            if Instant::now() > deadline {
                let _ = self.signal(libc::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!("stopped the {} DNS resolver (pid {})", self.scope.name(), self.pid);
    }
}

/// Resolvers running on `dir` (found through /proc: only when about to start one).
fn unrecorded(dir: &Path) -> Vec<libc::pid_t> {
    let (Some(id), Ok(entries)) = (identity(dir), fs::read_dir("/proc")) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| runs_as(pid, &id))
        .collect()
}

/// Whether `pid` is a process that has not exited (an exited one stays a zombie until the
/// process it was handed to, not kleene, reaps it).
fn is_live(pid: libc::pid_t) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
}

/// Whether `pid` runs the resolver binary with `dir` as its working directory.
fn is_resolver(pid: libc::pid_t, dir: &Path) -> bool {
    identity(dir).is_some_and(|id| runs_as(pid, &id))
}

/// What a resolver on `dir` looks like in /proc: (its binary, its working directory).
fn identity(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    Some((binary()?.canonicalize().ok()?, dir.canonicalize().ok()?))
}

fn runs_as(pid: libc::pid_t, (bin, dir): &(PathBuf, PathBuf)) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    fs::read_link(proc.join("exe")).is_ok_and(|exe| exe == *bin)
        && fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd == *dir)
}

/// `nobody`/`nogroup` (65534 where the names are unknown).
fn unprivileged_ids() -> (u32, u32) {
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    if pw.is_null() {
        return (65534, 65534);
    }
    // SAFETY: non-null, valid until the next getpw* call.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// In the child: become `uid`/`gid` without supplementary groups, keeping only
/// CAP_NET_BIND_SERVICE, raised as an ambient capability so it survives exec.
fn drop_to(uid: u32, gid: u32) -> io::Result<()> {
    const CAP_NET_BIND_SERVICE: u32 = 10;
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let cvt = |rc: libc::c_long| if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: plain syscalls on local values.
    unsafe {
        cvt(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
        cvt(libc::setgroups(0, std::ptr::null()).into())?;
        cvt(libc::setresgid(gid, gid, gid).into())?;
        cvt(libc::setresuid(uid, uid, uid).into())?;
        let bit = 1u32 << CAP_NET_BIND_SERVICE;
        let mut header = Header { version: VERSION_3, pid: 0 };
        let data = [
            Data { effective: bit, permitted: bit, inheritable: bit },
            Data { effective: 0, permitted: 0, inheritable: 0 },
        ];
        cvt(libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()))?;
        cvt(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE,
            CAP_NET_BIND_SERVICE as libc::c_ulong,
            0,
            0,
        )
        .into())?;
        cvt(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
    }
    Ok(())
}

/// Ask `probe`'s question; the addresses answered (empty for NXDOMAIN or no records).
fn ask(probe: &Probe) -> io::Result<std::collections::BTreeSet<IpAddr>> {
    let bind: SocketAddr = if probe.server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("valid");
    let sock = UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    sock.connect((probe.server, PORT))?;
    let id = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16);
    sock.send(&query(id, &probe.name, probe.v6))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf)?;
        if let Some(answer) = parse_answer(&buf[..n], id) {
            return Ok(answer);
        }
    }
}

/// A DNS query for `name` (A, or AAAA when `v6`), recursion desired.
fn query(id: u16, name: &str, v6: bool) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&(if v6 { 28u16 } else { 1u16 }).to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// The A and AAAA addresses in a response to query `id` (None: not a response to it).
fn parse_answer(msg: &[u8], id: u16) -> Option<std::collections::BTreeSet<IpAddr>> {
    let u16_at = |i: usize| msg.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if u16_at(0)? != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *msg.get(at)?;
            if len & 0xc0 == 0xc0 {
                return Some(at + 2);
            }
            if len == 0 {
                return Some(at + 1);
            }
            at += 1 + len as usize;
        }
    };
    for _ in 0..questions {
        at = skip_name(at)? + 4;
    }
    let mut out = std::collections::BTreeSet::new();
    for _ in 0..answers {
        at = skip_name(at)?;
        let (kind, len) = (u16_at(at)?, usize::from(u16_at(at + 8)?));
        let data = msg.get(at + 10..at + 10 + len)?;
        match (kind, len) {
            (1, 4) => out.insert(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
            (28, 16) => out.insert(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => false,
        };
        at += 10 + len;
    }
    Some(out)
}

fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new().mode(0o755).create(dir).or_else(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Ok(()),
        _ => Err(e),
    })?;
    Ok(())
}

fn lock(dns: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(dns.join("lock"))?;
    // SAFETY: flock on an fd we own; released when the file is dropped.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error()).context("cannot lock the DNS files");
    }
    Ok(file)
}

/// Replace `path` with `text` atomically: written in `staging` (the dns dir, on the same
/// file system and never read by the resolver), then renamed over it.
fn replace(staging: &Path, path: &Path, text: &str) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = staging.join(format!(".new-{}-{name}", std::process::id()));
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The containers' resolv.conf files. What was last written is recorded beside them
/// (`resolv.applied`), so a change touches only the files that differ instead of reading a
/// thousand to find them; `full` (reconcile), or a missing record, compares every file.
fn sync_resolv(dns: &Path, resolv: &BTreeMap<String, String>, full: bool) -> Result<()> {
    let (dir, record) = (dns.join("resolv"), dns.join("resolv.applied"));
    let file = |id: &str| dir.join(format!("{id}.conf"));
    let applied: Option<BTreeMap<String, String>> =
        fs::read(&record).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).filter(|_| !full && dir.is_dir());
    match applied {
        Some(old) if old == *resolv => return Ok(()),
        Some(old) => {
            for (id, text) in resolv.iter().filter(|(id, text)| old.get(*id) != Some(*text)) {
                replace(dns, &file(id), text)?;
            }
            for id in old.keys().filter(|id| !resolv.contains_key(*id)) {
                match fs::remove_file(file(id)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
        None => sync_dir(dns, &dir, resolv.iter().map(|(id, text)| (format!("{id}.conf"), text.clone())))?,
    }
    replace(dns, &record, &serde_json::to_string(resolv)?)
}

/// Make `dir` hold exactly `files` (name, text): changed ones replaced, others removed.
fn sync_dir(staging: &Path, dir: &Path, files: impl Iterator<Item = (String, String)>) -> Result<()> {
    let files: BTreeMap<String, String> = files.collect();
    if files.is_empty() && !dir.exists() {
        return Ok(());
    }
    make_dir(dir)?;
    for (name, text) in &files {
        let path = dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            replace(staging, &path, text)?;
        }
    }
    remove_others(dir, |name| files.contains_key(name))?;
    Ok(())
}

/// Remove the plain files in `dir` that `keep` does not name; whether any went.
fn remove_others(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<bool> {
    let mut removed = false;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !keep(name) && entry.metadata().is_ok_and(|m| m.is_file()) {
            fs::remove_file(entry.path())?;
            removed = true;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers_are_read_as_dns_has_them() {
        let q = query(0x1234, "web.x", true);
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x03web\x01x\x00\x00\x1c\x00\x01");
        // The response: the question echoed, one compressed A answer, one AAAA.
        let mut r = q.clone();
        r[2] |= 0x80;
        r[7] = 2;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 2]);
        r.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        r.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let got = parse_answer(&r, 0x1234).unwrap();
        let want: std::collections::BTreeSet<IpAddr> =
            ["10.0.0.2", "fd00::2"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(got, want);
        assert_eq!(parse_answer(&r, 0x4321), None, "another query's answer");
        assert_eq!(parse_answer(&q, 0x1234), None, "a query is no answer");
    }
}
