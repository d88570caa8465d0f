//! Who could have written what kleene is about to trust. kleene runs as root: a plugin file,
//! the state database or a namespace pin that anyone else could have replaced would make
//! their choice run as root. One rule for all of them: the thing and every directory above it
//! belong to root or to the user running kleene, and none of them is writable by group or
//! others (a directory above may be, if it is sticky like `/tmp`: others cannot rename or
//! delete what is not theirs there).

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Why a file or directory (named as `shown`) may not be trusted, as one phrase naming it
/// and the fix.
pub fn check_owner_and_mode(shown: &Path, meta: &Metadata) -> Result<(), String> {
    check_owner(shown, meta)?;
    if meta.mode() & GROUP_OR_OTHER_WRITE != 0 {
        return Err(format!("{} is writable by group or others (chmod go-w it)", shown.display()));
    }
    Ok(())
}

fn check_owner(shown: &Path, meta: &Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!("{} is owned by uid {}, not root or you (chown root it)", shown.display(), meta.uid()));
    }
    Ok(())
}

/// Check the directory `dir` (which must exist) and every directory above it, along the path
/// as given and along its real path (symbolic links resolved), so neither the directory nor a
/// link leading to it can be swapped by someone else.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let given = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let real = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut seen: Vec<PathBuf> = Vec::new();
    for leaf in [&given, &real] {
        for (depth, p) in leaf.ancestors().enumerate() {
            if seen.iter().any(|s| s == p) {
                continue;
            }
            seen.push(p.to_path_buf());
            let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            check_component(p, &meta, depth == 0)?;
        }
    }
    Ok(())
}

/// One component of a path. A symbolic link's own mode means nothing (who owns it does: its
/// owner may replace it even in a sticky directory); a directory above the checked one may be
/// world-writable if it is sticky.
fn check_component(p: &Path, meta: &Metadata, is_checked_dir: bool) -> Result<(), String> {
    if meta.file_type().is_symlink() {
        return check_owner(p, meta);
    }
    let sticky = meta.permissions().mode() & STICKY != 0;
    if !is_checked_dir && sticky {
        return check_owner(p, meta);
    }
    check_owner_and_mode(p, meta)
}

/// Create `dir` if needed (private to its owner), then check it as [`check_dir`] does.
/// `what` names the directory in the one-line error ("state dir", "run dir").
pub fn ensure_private_dir(what: &str, dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {what} {}: {e}", dir.display()))?;
    check_dir(dir).map_err(|why| anyhow::anyhow!("{what} {}: refusing to use it: {why}", dir.display()))
}
