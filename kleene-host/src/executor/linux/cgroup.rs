//! Minimal cgroup-v2 management: create a cgroup, move processes into it,
//! and tear it down (killing whatever is left inside).

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long `kill_all` waits for killed processes to leave the cgroup.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// Mount point of the cgroup2 (unified) hierarchy, read from
/// /proc/self/mountinfo because hybrid hosts mount it somewhere other than
/// /sys/fs/cgroup (e.g. /sys/fs/cgroup/unified).
///
/// The usual places are tried first with statfs(2) — one cheap call each — because
/// mountinfo grows with every container's namespace bind mount, and reading it on every
/// start and stop made them slower as containers accumulated.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    if let Some(known) = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().find(|p| is_cgroup2(Path::new(p))) {
        return Ok(PathBuf::from(known));
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    mountinfo
        .lines()
        .find_map(cgroup2_mountpoint)
        .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "no cgroup2 filesystem mounted"))
}

/// Every mount point of the cgroup2 hierarchy (hosts and tests may mount it more than once).
pub fn cgroup2_mounts() -> io::Result<Vec<PathBuf>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut all: Vec<PathBuf> = mountinfo.lines().filter_map(cgroup2_mountpoint).collect();
    // A point mounted over more than once is listed once per mount: cover it once.
    all.sort();
    all.dedup();
    Ok(all)
}

/// Whether a cgroup2 file system is mounted at `path`.
fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a properly sized out-parameter.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::CGROUP2_SUPER_MAGIC }
}

/// The mount point of one mountinfo line if its filesystem type is cgroup2.
/// Format: `id parent maj:min root mountpoint opts [optional...] - fstype src superopts`.
fn cgroup2_mountpoint(line: &str) -> Option<PathBuf> {
    let (left, right) = line.split_once(" - ")?;
    if right.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let mountpoint = left.split_whitespace().nth(4)?;
    Some(PathBuf::from(unescape_octal(mountpoint)))
}

/// Undo the kernel's `\ooo` escaping of spaces, tabs, newlines and
/// backslashes in mountinfo paths.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount the cgroup2 hierarchy at `at` (if it is not already there) and return it.
pub fn mount_private(at: &Path) -> io::Result<PathBuf> {
    if at.join("cgroup.procs").exists() {
        return Ok(at.to_path_buf());
    }
    fs::create_dir_all(at)?;
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe { libc::mount(c"cgroup2".as_ptr(), target.as_ptr(), c"cgroup2".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(at.to_path_buf())
}

/// Create the cgroup directory. An existing directory is an error so two
/// containers can never silently share a cgroup.
pub fn create(path: &Path) -> io::Result<()> {
    // Another kleene may remove the shared parent when its last container goes: retry once.
    for _ in 0..2 {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::create_dir(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            other => return other,
        }
    }
    fs::create_dir(path)
}

/// Move process `pid` (and all its threads) into the cgroup.
pub fn add_process(path: &Path, pid: u32) -> io::Result<()> {
    fs::write(path.join("cgroup.procs"), pid.to_string())
}

/// The processes currently in the cgroup (not its descendants).
pub fn processes(path: &Path) -> io::Result<Vec<u32>> {
    let procs = fs::read_to_string(path.join("cgroup.procs"))?;
    procs.lines().map(|l| l.trim().parse().map_err(|e| io::Error::new(ErrorKind::InvalidData, e))).collect()
}

/// SIGKILL everything in the cgroup and its descendants, then wait until
/// the cgroup is empty.
pub fn kill_all(path: &Path) -> io::Result<()> {
    let kill_file = path.join("cgroup.kill");
    if !is_populated(path)? {
        return Ok(());
    }
    // cgroup.kill (5.14+) kills atomically, so processes forking while we
    // kill cannot escape; the pid loop below is the fallback.
    if kill_file.exists() {
        fs::write(&kill_file, "1")?;
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while is_populated(path)? {
        if Instant::now() >= deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, format!("processes still alive in {}", path.display())));
        }
        if !kill_file.exists() {
            kill_pids(path)?;
        }
        sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Whether any process is left in the cgroup or its descendants.
fn is_populated(path: &Path) -> io::Result<bool> {
    match fs::read_to_string(path.join("cgroup.events")) {
        Ok(events) => Ok(events.lines().any(|l| l.trim() == "populated 1")),
        // Without cgroup.events only the cgroup's own members are visible.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(!processes(path)?.is_empty()),
        Err(e) => Err(e),
    }
}

fn kill_pids(path: &Path) -> io::Result<()> {
    for pid in processes(path)? {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            continue;
        };
        // SAFETY: kill(2) has no memory-safety preconditions. ESRCH (already
        // gone) is fine, so the result is ignored.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Ok(())
}

/// Kill everything in the cgroup and remove it together with any child
/// cgroups the container created. A missing cgroup is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match kill_all(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other?,
    }
    remove_dirs(path)
}

/// rmdir depth-first; cgroupfs only allows removing empty cgroups, and the
/// control files inside vanish with the directory.
fn remove_dirs(path: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_dirs(&entry.path())?;
        }
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_line() {
        let line = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_mountpoint(line), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let tagged = "30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(cgroup2_mountpoint(tagged), Some(PathBuf::from("/sys/fs/cgroup")));
        let v1 = "35 31 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(cgroup2_mountpoint(v1), None);
    }

    #[test]
    fn unescapes_spaces() {
        assert_eq!(unescape_octal(r"/a\040b\\c"), r"/a b\\c");
        assert_eq!(unescape_octal(r"/a\134b"), r"/a\b");
    }
}
