//! Plugin discovery and loading.
//!
//! Search order: `--plugin-path`/`$KLEENE_PLUGIN_PATH` (colon-separated), then
//! `<dir of the kleene binary>/../lib/kleene/plugins`, then the platform default. A plugin's
//! name comes from its file name (`libkleene_<name>.so`), so a command loads only the plugins
//! it needs; the first file of a name wins and later ones are listed as shadowed.

use crate::logging::PluginServices;
use crate::trust;
use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError, RootModuleError};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RRef;
use abi_stable::std_types::RResult;
use anyhow::{anyhow, bail, Result};
use kleene_plugin_api::abi::{HostServices_TO, PluginModRef};
use kleene_plugin_api::{api_major, Call, NetworkTraits, Op, Plan, PluginInfo, PluginKind, Stack, API_VERSION};
use std::path::{Path, PathBuf};

const PREFIX: &str = "libkleene_";
const SUFFIX: &str = ".so";

pub fn default_dir() -> &'static str {
    if cfg!(target_os = "freebsd") {
        "/usr/local/lib/kleene/plugins"
    } else {
        "/usr/lib/kleene/plugins"
    }
}

/// The directories searched, in order.
pub fn search_dirs(plugin_path: Option<&str>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        plugin_path.unwrap_or("").split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect();
    if let Some(bin_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.push(bin_dir.join("../lib/kleene/plugins"));
    }
    dirs.push(PathBuf::from(default_dir()));
    dirs
}

/// A plugin file found on the search path, not yet loaded.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub path: PathBuf,
    /// Set when an earlier file of the same name wins.
    pub shadowed_by: Option<PathBuf>,
}

/// A loaded, checked plugin (cheap to clone: the library stays loaded for the process).
#[derive(Clone)]
pub struct Plugin {
    pub info: PluginInfo,
    pub path: PathBuf,
    module: PluginModRef,
}

pub struct Registry {
    pub candidates: Vec<Candidate>,
}

impl Registry {
    pub fn discover(plugin_path: Option<&str>) -> Registry {
        let mut candidates: Vec<Candidate> = Vec::new();
        for dir in search_dirs(plugin_path) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for path in files {
                let Some(name) = plugin_name(&path) else { continue };
                let shadowed_by =
                    candidates.iter().find(|c| c.name == name && c.shadowed_by.is_none()).map(|c| c.path.clone());
                candidates.push(Candidate { name, path, shadowed_by });
            }
        }
        Registry { candidates }
    }

    /// The winning file for `name`, if any.
    pub fn find(&self, name: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.name == name && c.shadowed_by.is_none())
    }

    /// Load the plugin `name` and check it is of `kind`.
    pub fn load(&self, name: &str, kind: PluginKind) -> Result<Plugin> {
        let Some(candidate) = self.find(name) else {
            let what = match kind {
                PluginKind::NetworkType => "network type",
                PluginKind::Driver => "network driver",
            };
            bail!(
                "unknown {what} '{name}': no plugin file {PREFIX}{name}{SUFFIX} on the plugin path; install the kleene-plugin-{name} package or set KLEENE_PLUGIN_PATH"
            );
        };
        let plugin = load_file(&candidate.path)?;
        if plugin.info.kind != kind {
            bail!("plugin '{name}' is a {}, not a {}", plugin.info.kind.as_str(), kind.as_str());
        }
        Ok(plugin)
    }
}

fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(SUFFIX)?;
    Some(stem.strip_prefix(PREFIX).unwrap_or(stem).to_string())
}

/// A plugin file opened once and checked: what is checked is what gets loaded.
struct OpenedPlugin {
    file: std::fs::File,
    real: PathBuf,
}

impl OpenedPlugin {
    /// Open `path` and refuse it unless it is a regular file that only root or we could have
    /// written, in directories (along the search path and along its real path) that only
    /// root or we could have changed. Opening does not block: a FIFO named like a plugin is
    /// refused, not waited on.
    fn open(path: &Path) -> Result<OpenedPlugin, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| e.to_string())?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.file_type().is_file() {
            return Err("not a regular file (a plugin is a shared library file); remove it from the plugin dir".into());
        }
        let real = real_path(path, &file)?;
        let refuse = |why: String| format!("refusing to load: {why}");
        trust::check_owner_and_mode(&real, &meta).map_err(refuse)?;
        // The directory it was found in (a link there could be swapped) and the one it lives in.
        for dir in [path.parent(), real.parent()].into_iter().flatten() {
            trust::check_dir(dir).map_err(refuse)?;
        }
        Ok(OpenedPlugin { file, real })
    }

    /// The path dlopen is given. On Linux, the opened file itself (`/proc/self/fd/N`), so a
    /// file renamed into place after the checks is never the one loaded. Elsewhere the real
    /// path of the checked file (FreeBSD has `fdlopen`, but abi_stable loads by path only).
    fn load_path(&self) -> PathBuf {
        if cfg!(target_os = "linux") {
            fd_path(&self.file)
        } else {
            self.real.clone()
        }
    }

    /// Load the checked file. The descriptor stays open for the life of the process, as the
    /// library does: the dynamic loader knows the library by this name, and a later plugin
    /// opened on a reused descriptor number would otherwise be taken for it.
    fn load(self) -> Result<&'static LibHeader, LibraryError> {
        let at = self.load_path();
        std::mem::forget(self.file);
        lib_header_from_path(&at)
    }
}

/// Where the opened `file` (found as `path`) really is, every link resolved: on Linux as the
/// kernel knows the open file, elsewhere by resolving the path again.
fn real_path(path: &Path, file: &std::fs::File) -> Result<PathBuf, String> {
    let real = if cfg!(target_os = "linux") { std::fs::read_link(fd_path(file)) } else { path.canonicalize() };
    real.map_err(|e| format!("cannot tell where the opened file is: {e}"))
}

fn fd_path(file: &std::fs::File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Open, check and describe one plugin file. Every failure is one line naming the file.
pub fn load_file(path: &Path) -> Result<Plugin> {
    let fail = |why: String| anyhow!("{}: {why}", path.display());
    let opened = OpenedPlugin::open(path).map_err(fail)?;
    check_elf(&opened.file).map_err(fail)?;
    let header = opened.load().map_err(|e| fail(describe(&e)))?;
    let module = header.init_root_module::<PluginModRef>().map_err(|e| fail(describe(&e)))?;
    let info_json = match (module.info())() {
        RResult::ROk(s) => s.into_string(),
        RResult::RErr(e) => return Err(fail(format!("plugin failed to describe itself: {e}"))),
    };
    let info: PluginInfo =
        serde_json::from_str(&info_json).map_err(|e| fail(format!("unreadable plugin metadata: {e}")))?;
    let info = crate::legacy::complete(info);
    let host_major = api_major(API_VERSION);
    if api_major(&info.api_version) != host_major {
        return Err(fail(format!(
            "built for plugin API {} but this kleene speaks API {API_VERSION}; rebuild the plugin against kleene-plugin-api {}.x",
            info.api_version,
            host_major.unwrap_or(0)
        )));
    }
    if plugin_name(path).as_deref() != Some(info.name.as_str()) {
        return Err(fail(format!("file name does not match the plugin's name '{}'", info.name)));
    }
    tracing::debug!(plugin = %info.name, path = %path.display(), "loaded plugin");
    Ok(Plugin { info, path: path.to_path_buf(), module })
}

/// Check the file is a whole ELF shared object before handing it to dlopen: the dynamic
/// loader maps segments past the end of a truncated file and the host dies of SIGBUS. Only
/// the header and the two header tables are read, through the file already opened.
fn check_elf(file: &std::fs::File) -> Result<(), String> {
    use object::elf::{FileHeader32, FileHeader64};
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let data = object::read::ReadCache::new(file);
    match object::FileKind::parse(&data) {
        Ok(object::FileKind::Elf32) => check_elf_as::<FileHeader32<object::Endianness>>(&data, size),
        Ok(object::FileKind::Elf64) => check_elf_as::<FileHeader64<object::Endianness>>(&data, size),
        _ => Err("not a kleene plugin (not an ELF shared library)".into()),
    }
}

/// The rest of [`check_elf`], for one ELF class: a shared library whose program and section
/// header tables, and every segment the loader would map, lie inside the file.
fn check_elf_as<Elf: object::read::elf::FileHeader<Endian = object::Endianness>>(
    data: &object::read::ReadCache<&std::fs::File>,
    size: u64,
) -> Result<(), String> {
    use object::read::elf::ProgramHeader;
    let truncated = || format!("truncated or corrupt library ({size} bytes); reinstall the plugin");
    let header = Elf::parse(data).map_err(|_| truncated())?;
    let endian = header.endian().map_err(|_| truncated())?;
    if header.e_type(endian) != object::elf::ET_DYN {
        return Err("not a kleene plugin (an ELF file, but not a shared library)".into());
    }
    header.section_headers(endian, data).map_err(|_| truncated())?;
    for segment in header.program_headers(endian, data).map_err(|_| truncated())? {
        let (offset, len) = segment.file_range(endian);
        if offset.checked_add(len).map_or(true, |end| end > size) {
            return Err(truncated());
        }
    }
    Ok(())
}

fn describe(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { .. } => format!("not a loadable library: {}", first_line(e)),
        LibraryError::GetSymbolError { .. } => "not a kleene plugin (no abi_stable root module symbol)".into(),
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => format!(
            "built for an incompatible plugin ABI {actual_version} (this kleene loads {expected_version}); rebuild the plugin"
        ),
        LibraryError::AbiInstability(_) => "its interface layout does not match this kleene's; rebuild the plugin".into(),
        LibraryError::RootModule { err: RootModuleError::Unwound, .. } => "plugin panicked while initialising".into(),
        LibraryError::RootModule { err, .. } => format!("plugin failed while initialising: {}", first_line(err)),
        other => first_line(other),
    }
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown error").to_string()
}

impl Plugin {
    /// The stack a driver's containers get (declared, or from the 1.0 table).
    pub fn stack(&self) -> Stack {
        self.info.driver_traits.map_or(crate::legacy::UNKNOWN_DRIVER_STACK, |t| t.stack)
    }

    /// What a network type says of its networks (declared, or from the 1.0 table).
    pub fn network_traits(&self) -> NetworkTraits {
        self.info.network_traits.unwrap_or_default()
    }

    /// Ask the plugin to plan `call`. Panics and unknown operations become errors.
    pub fn plan(&self, call: &Call) -> Result<Plan> {
        let name = &self.info.name;
        let services = PluginServices { plugin: name.clone() };
        let host = HostServices_TO::from_ptr(RRef::new(&services), TD_Opaque);
        let request = serde_json::to_string(call)?;
        let reply = match (self.module.call())(host, request.as_str().into()) {
            RResult::ROk(s) => s.into_string(),
            // The API crate reports a caught panic without knowing whose it was.
            RResult::RErr(e) => match e.as_str().strip_prefix("plugin panicked: ") {
                Some(what) => bail!("plugin '{name}' panicked during {}: {what}", call.name()),
                None => bail!("{e}"),
            },
        };
        parse_plan(name, &reply)
    }
}

/// Read a plan, naming the first operation this host does not know.
fn parse_plan(plugin: &str, json: &str) -> Result<Plan> {
    let raw: serde_json::Value =
        serde_json::from_str(json).map_err(|e| anyhow!("plugin '{plugin}' returned an unreadable plan: {e}"))?;
    let steps = raw.get("steps").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    for step in &steps {
        let ops = std::iter::once(step.get("op"))
            .chain(step.get("undo").and_then(|u| u.as_array()).into_iter().flatten().map(Some));
        for op in ops.flatten() {
            if serde_json::from_value::<Op>(op.clone()).is_err() {
                let tag = op.get("op").and_then(|t| t.as_str()).unwrap_or("?");
                bail!("plugin '{plugin}' asked for operation '{tag}', which this kleene does not know; upgrade kleene or use an older plugin");
            }
        }
    }
    let plan: Plan =
        serde_json::from_value(raw).map_err(|e| anyhow!("plugin '{plugin}' returned an unreadable plan: {e}"))?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::check_elf;

    /// `check_elf` of this test binary (a 64-bit little-endian ELF shared object, as every
    /// position-independent executable is) after `edit`.
    fn check_edited(tag: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), String> {
        let mut bytes = std::fs::read("/proc/self/exe").expect("read own binary");
        edit(&mut bytes);
        let path = std::env::temp_dir().join(format!("kleene-elf-{tag}-{}", std::process::id()));
        std::fs::write(&path, &bytes).expect("write copy");
        let result = check_elf(&std::fs::File::open(&path).expect("open copy"));
        let _ = std::fs::remove_file(&path);
        result
    }

    #[test]
    fn only_whole_elf_shared_objects_pass() {
        assert_eq!(check_edited("whole", |_| {}), Ok(()));
        let not_elf = Err("not a kleene plugin (not an ELF shared library)".to_string());
        assert_eq!(check_edited("magic", |b| b[..4].copy_from_slice(b"\x7fELG")), not_elf);
        assert_eq!(check_edited("short", |b| b.truncate(10)), not_elf);
        let exec = check_edited("exec", |b| b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()));
        assert_eq!(exec, Err("not a kleene plugin (an ELF file, but not a shared library)".into()));
        let half = check_edited("half", |b| b.truncate(b.len() / 2));
        assert!(half.as_ref().is_err_and(|e| e.starts_with("truncated or corrupt library")), "{half:?}");
        // No section header table to fall off the end: only the segments tell.
        let cut = check_edited("segments", |b| {
            b[0x28..0x30].fill(0);
            b[0x3c..0x3e].fill(0);
            b.truncate(4096);
        });
        assert_eq!(cut, Err("truncated or corrupt library (4096 bytes); reinstall the plugin".into()));
    }
}
