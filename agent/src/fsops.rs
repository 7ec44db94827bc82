//! The only module that writes to the managed system.
//!
//! [`Root`] maps the policy's absolute paths beneath the configured root and refuses
//! anything that would leave it. [`Batch`] makes every change atomic: new content
//! goes to a temp file beside its destination, is made durable, then renamed over
//! the destination, and the directory is fsynced. A batch of many writes flushes
//! them with one `syncfs` before any rename instead of one fsync each (0.5 ms per
//! file on a virtio disk), which keeps the same guarantee: no rename happens before
//! the data it exposes is on disk, so a crash leaves either the old or the new file.
//! [`read_seen`] reads a managed file only if it is still the file observed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use tenet_policies::model::AbsPath;

/// Symlinks followed while resolving one path before it counts as a loop (as Linux's ELOOP).
const MAX_LINK_HOPS: u32 = 40;

/// Above this many file writes a batch flushes with one `syncfs` instead of one fsync per file.
const SYNCFS_THRESHOLD: usize = 16;

/// Why a policy path cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A symlink on the way leads out of the root.
    #[error("{path}: symlink {link} leads out of the root")]
    Escapes {
        /// The policy path.
        path: String,
        /// The offending link.
        link: PathBuf,
    },
    /// Too many symlinks.
    #[error("{path}: too many levels of symbolic links (a symlink loop?)")]
    Loop {
        /// The policy path.
        path: String,
    },
    /// A component on the way is not a directory.
    #[error("{path}: {component} is not a directory")]
    NotDir {
        /// The policy path.
        path: String,
        /// The offending component.
        component: PathBuf,
    },
    /// Reading a component failed.
    #[error("{path}: cannot inspect {component}")]
    Io {
        /// The policy path.
        path: String,
        /// The component that could not be read.
        component: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Whether the last component of a path is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Resolve the parent only; the path itself may be a link (files, links, absent paths).
    Parent,
    /// Follow a link at the end too, as long as it stays inside the root (edited files).
    All,
}

/// The directory every policy path is resolved beneath: `/` in production, a sandbox in tests.
#[derive(Debug)]
pub struct Root {
    base: PathBuf,
    /// What resolution found since the last change: real directories and missing
    /// paths. Cleared by [`Root::forget`] after every apply.
    seen: Mutex<HashMap<PathBuf, Seen>>,
    /// The process umask, so a file created with the wanted mode needs no chmod.
    umask: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Dir,
    Missing,
}

impl Root {
    /// A root at `base`, which must be an existing directory (canonicalised here).
    pub fn new(base: &Path) -> io::Result<Self> {
        let base = fs::canonicalize(base)?;
        if !fs::metadata(&base)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", base.display()),
            ));
        }
        // Reading the umask means setting it; put the old one straight back.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        Ok(Self {
            base,
            seen: Mutex::new(HashMap::new()),
            umask: old.bits(),
        })
    }

    /// The root directory on this machine.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Whether this root is the machine's own `/` (so the kernel's hostname is ours to set).
    pub fn is_host_root(&self) -> bool {
        self.base == Path::new("/")
    }

    /// Where a policy path lies on this machine, lexically (no symlink checks): for messages.
    pub fn display_path(&self, p: &AbsPath) -> PathBuf {
        self.base.join(p.relative())
    }

    /// Resolves a policy path beneath the root, following symlinks on the way only
    /// while they stay inside it.
    ///
    /// A missing component ends the walk: nothing below it can be a link yet.
    pub fn resolve(&self, p: &AbsPath, follow: Follow) -> Result<PathBuf, PathError> {
        let shown = p.to_string();
        let mut real = self.base.clone();
        let mut queue: VecDeque<OsString> = p
            .relative()
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                if real == self.base {
                    if !self.is_host_root() {
                        return Err(PathError::Escapes {
                            path: shown,
                            link: self.policy_path(&real),
                        });
                    }
                } else {
                    real.pop();
                }
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let next = real.join(&c);
            if queue.is_empty() && follow == Follow::Parent {
                return Ok(next);
            }
            match self.seen(&next) {
                Some(Seen::Dir) => {
                    real = next;
                    continue;
                }
                Some(Seen::Missing) => {
                    real = next;
                    real.extend(queue.drain(..));
                    return Ok(real);
                }
                None => {}
            }
            let meta = match fs::symlink_metadata(&next) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.remember(&next, Seen::Missing);
                    real = next;
                    real.extend(queue.drain(..));
                    return Ok(real);
                }
                Err(e) => {
                    return Err(PathError::Io {
                        path: shown,
                        component: self.policy_path(&next),
                        source: e,
                    });
                }
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(PathError::Loop { path: shown });
                }
                let target = fs::read_link(&next).map_err(|e| PathError::Io {
                    path: shown.clone(),
                    component: self.policy_path(&next),
                    source: e,
                })?;
                let mut comps: Vec<OsString> = Vec::new();
                if target.is_absolute() {
                    let inside = if self.is_host_root() {
                        Some(target.as_path())
                    } else {
                        target.strip_prefix(&self.base).ok()
                    };
                    let Some(rest) = inside else {
                        return Err(PathError::Escapes {
                            path: shown,
                            link: self.policy_path(&next),
                        });
                    };
                    real = self.base.clone();
                    comps.extend(rest.components().filter_map(normal_or_parent));
                } else {
                    comps.extend(target.components().filter_map(normal_or_parent));
                }
                for c in comps.into_iter().rev() {
                    queue.push_front(c);
                }
                continue;
            }
            if !queue.is_empty() && !meta.is_dir() {
                return Err(PathError::NotDir {
                    path: shown,
                    component: self.policy_path(&next),
                });
            }
            if meta.is_dir() {
                self.remember_dir(&next);
            }
            real = next;
        }
        Ok(real)
    }

    /// A path beneath the root as the policy names it (`/etc/x`), for messages.
    pub fn policy_path(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(&self.base) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => host.to_path_buf(),
        }
    }

    /// Forgets what resolution learnt: called after anything that may turn a
    /// directory into something else (links, removals).
    pub(crate) fn forget(&self) {
        if let Ok(mut d) = self.seen.lock() {
            d.clear();
        }
    }

    fn seen(&self, p: &Path) -> Option<Seen> {
        self.seen.lock().ok().and_then(|d| d.get(p).copied())
    }

    fn known_dir(&self, p: &Path) -> bool {
        self.seen(p) == Some(Seen::Dir)
    }

    fn remember(&self, p: &Path, what: Seen) {
        if let Ok(mut d) = self.seen.lock() {
            d.insert(p.to_path_buf(), what);
        }
    }

    fn remember_dir(&self, p: &Path) {
        self.remember(p, Seen::Dir);
    }
}

fn normal_or_parent(c: Component<'_>) -> Option<OsString> {
    match c {
        Component::Normal(s) => Some(s.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    }
}

/// Mode and ids to give a file or directory; `None` keeps what is there (or the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
}

/// What a new link replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Nothing is there: the link is made in place.
    Nothing,
    /// A link or a file: a temp link is renamed over it.
    Entry,
    /// An empty directory: removed, then the link renamed into place.
    EmptyDir,
}

#[derive(Debug)]
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    unit: usize,
}

/// Changes being made by one engine phase, committed together.
#[derive(Debug)]
pub struct Batch<'r> {
    root: &'r Root,
    staged: Vec<Staged>,
    dirs: BTreeSet<PathBuf>,
    per_file_fsync: bool,
}

impl<'r> Batch<'r> {
    /// A batch expected to write about `writes` files.
    pub fn new(root: &'r Root, writes: usize) -> Self {
        Self {
            root,
            staged: Vec::new(),
            dirs: BTreeSet::new(),
            per_file_fsync: writes <= SYNCFS_THRESHOLD,
        }
    }

    /// Stages `content` for `dest` (a resolved path beneath the root), creating
    /// missing parent directories (0755). The destination changes at [`Batch::commit`].
    pub fn write_file(
        &mut self,
        unit: usize,
        dest: &Path,
        content: &[u8],
        attrs: Attrs,
    ) -> io::Result<()> {
        let parent = self.parent_of(dest)?;
        self.make_parents(&parent)?;
        let tmp = temp_path(dest);
        let mode = attrs.mode.unwrap_or(0o644);
        let mut f = create_new(&tmp, mode)?;
        let staged = (|| {
            f.write_all(content)?;
            // open() applied the umask; set the mode only where it took bits away.
            if mode & !self.root.umask != mode || mode & 0o7000 != 0 {
                f.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            if attrs.uid.is_some() || attrs.gid.is_some() {
                std::os::unix::fs::fchown(&f, attrs.uid, attrs.gid)?;
            }
            if self.per_file_fsync {
                f.sync_all()?;
            }
            Ok(())
        })();
        drop(f);
        if let Err(e) = staged {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.staged.push(Staged {
            tmp,
            dest: dest.to_path_buf(),
            unit,
        });
        Ok(())
    }

    /// Makes `dest` a symlink to `target`. Where nothing is at `dest` (`Replace::Nothing`)
    /// the link is made in place, since symlink(2) is atomic by itself; otherwise a
    /// temp link replaces `dest` at commit. `Replace::EmptyDir` first removes the
    /// empty directory in the way.
    pub fn symlink(
        &mut self,
        unit: usize,
        dest: &Path,
        target: &Path,
        replace: Replace,
    ) -> io::Result<()> {
        let parent = self.parent_of(dest)?;
        self.make_parents(&parent)?;
        if replace == Replace::Nothing {
            #[expect(
                clippy::disallowed_methods,
                reason = "fsops is where links are made; a new link is atomic"
            )]
            std::os::unix::fs::symlink(target, dest)?;
            self.dirs.insert(parent);
            return Ok(());
        }
        let tmp = temp_path(dest);
        remove_if_present(&tmp)?;
        #[expect(
            clippy::disallowed_methods,
            reason = "fsops is where links are made: temp link, then rename"
        )]
        std::os::unix::fs::symlink(target, &tmp)?;
        if replace == Replace::EmptyDir {
            fs::remove_dir(dest)?;
            self.root.forget();
        }
        self.staged.push(Staged {
            tmp,
            dest: dest.to_path_buf(),
            unit,
        });
        Ok(())
    }

    /// Removes a path now (a removal is atomic by itself); a directory only when
    /// `recursive` or empty.
    pub fn remove(&mut self, path: &Path, recursive: bool) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        if meta.is_dir() {
            if recursive {
                fs::remove_dir_all(path)?
            } else {
                fs::remove_dir(path)?
            }
            self.root.forget();
        } else {
            fs::remove_file(path)?;
        }
        self.dirs.insert(self.parent_of(path)?);
        Ok(())
    }

    /// Creates a directory and any missing parents (parents 0755), then sets attributes.
    pub fn make_dir(&mut self, path: &Path, attrs: Attrs) -> io::Result<()> {
        let parent = self.parent_of(path)?;
        self.make_parents(&parent)?;
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && fs::symlink_metadata(path)?.is_dir() => {}
            Err(e) => return Err(e),
        }
        self.dirs.insert(parent);
        self.set_attrs(
            path,
            Attrs {
                mode: Some(attrs.mode.unwrap_or(0o755)),
                ..attrs
            },
        )
    }

    /// Sets mode and ids of an existing file or directory (never through a symlink).
    pub fn set_attrs(&mut self, path: &Path, attrs: Attrs) -> io::Result<()> {
        let f = File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)?;
        if let Some(mode) = attrs.mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        if attrs.uid.is_some() || attrs.gid.is_some() {
            std::os::unix::fs::fchown(&f, attrs.uid, attrs.gid)?;
        }
        f.sync_all()
    }

    /// Makes every staged change durable and visible: flush the temp files, rename
    /// each over its destination, fsync each touched directory. Returns the units
    /// whose changes failed, with the error.
    pub fn commit(mut self) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        if !self.per_file_fsync && !self.staged.is_empty() {
            let synced = File::open(self.root.base())
                .and_then(|d| nix::unistd::syncfs(&d).map_err(io::Error::from));
            if let Err(e) = synced {
                // Nothing is renamed unless it is known to be on disk.
                for s in self.staged.drain(..) {
                    let _ = fs::remove_file(&s.tmp);
                    failed.push((s.unit, io::Error::new(e.kind(), format!("syncfs: {e}"))));
                }
            }
        }
        for s in std::mem::take(&mut self.staged) {
            #[expect(
                clippy::disallowed_methods,
                reason = "fsops is where renames happen; the directory is fsynced below"
            )]
            match fs::rename(&s.tmp, &s.dest) {
                Ok(()) => {
                    if let Some(p) = s.dest.parent() {
                        self.dirs.insert(p.to_path_buf());
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&s.tmp);
                    failed.push((s.unit, e));
                }
            }
        }
        for d in &self.dirs {
            if let Err(e) = File::open(d).and_then(|f| f.sync_all()) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot fsync directory");
            }
        }
        failed
    }

    fn parent_of(&self, p: &Path) -> io::Result<PathBuf> {
        match p.parent() {
            Some(parent) if parent.starts_with(self.root.base()) => Ok(parent.to_path_buf()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no parent inside the root", p.display()),
            )),
        }
    }

    /// Creates missing directories down to `dir` (0755), recording their parents for fsync.
    fn make_parents(&mut self, dir: &Path) -> io::Result<()> {
        if self.root.known_dir(dir) {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = dir.to_path_buf();
        loop {
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is not a directory", cur.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing.push(cur.clone());
                    if !cur.pop() || !cur.starts_with(self.root.base()) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => {
                    fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(p) = d.parent() {
                self.dirs.insert(p.to_path_buf());
            }
            self.dirs.insert(d);
        }
        self.root.remember_dir(dir);
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for s in &self.staged {
            let _ = fs::remove_file(&s.tmp);
        }
    }
}

/// A note in the state directory of where a batch is creating temp files, so that a
/// run killed before its commit leaves a list for the next run to clean up.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
}

/// The journal files' name prefix in the state directory.
const JOURNAL_PREFIX: &str = "staging.";

impl Journal {
    /// Records `dirs` durably in `STATE/staging.NAME` before any temp file is made there.
    pub fn begin(state_dir: &Path, name: &str, dirs: &BTreeSet<PathBuf>) -> io::Result<Self> {
        fs::create_dir_all(state_dir)?;
        let path = state_dir.join(format!("{JOURNAL_PREFIX}{name}"));
        let mut f = File::create(&path)?;
        let mut text = Vec::new();
        for d in dirs {
            text.extend_from_slice(d.as_os_str().as_bytes());
            text.push(b'\n');
        }
        f.write_all(&text)?;
        f.sync_all()?;
        Ok(Self { path })
    }

    /// The batch committed (or cleaned up after itself): the note goes.
    pub fn end(self) -> io::Result<()> {
        remove_if_present(&self.path)
    }
}

/// Removes temp files that interrupted runs left in the directories their journals
/// name (only names with tenet's reserved temp suffix, only beneath the root), and
/// the journals. Returns how many temp files were removed.
pub fn recover(state_dir: &Path, root: &Root) -> io::Result<usize> {
    let entries = match fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(JOURNAL_PREFIX)
        {
            continue;
        }
        let text = fs::read(entry.path())?;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let dir = PathBuf::from(std::ffi::OsStr::from_bytes(line));
            if !dir.starts_with(root.base()) {
                continue;
            }
            let Ok(list) = fs::read_dir(&dir) else {
                continue;
            };
            for e in list.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(tenet_policies::TEMP_SUFFIX) {
                    remove_if_present(&e.path())?;
                    removed += 1;
                }
            }
        }
        fs::remove_file(entry.path())?;
    }
    Ok(removed)
}

/// Reads the regular file at `path` that `seen` (its `lstat`, taken while observing)
/// describes. It is opened without following a symlink or waiting on a FIFO, and its
/// bytes are returned only if what was opened is that same file, unchanged (device,
/// inode, size, mtime and ctime): a file swapped for a link to somewhere outside the
/// root between the look and the read is never read, and what the stat cache records
/// is the stat of the bytes read. A swap is an error; the next run looks again.
pub fn read_seen(path: &Path, seen: &fs::Metadata) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let changed = || {
        io::Error::other(format!(
            "{} changed while it was being read; the next run looks again",
            path.display()
        ))
    };
    let mut file = tenet_keys::fsio::open_read_no_follow(path).map_err(|e| {
        if tenet_keys::fsio::is_symlink_refusal(&e) {
            changed()
        } else {
            e
        }
    })?;
    let now = file.metadata()?;
    let id = |m: &fs::Metadata| {
        (
            m.dev(),
            m.ino(),
            m.len(),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        )
    };
    if !now.is_file() || id(&now) != id(seen) {
        return Err(changed());
    }
    let mut out = Vec::with_capacity(usize::try_from(now.len()).unwrap_or(0));
    file.read_to_end(&mut out)?;
    Ok(out)
}

/// Creates a file that must not exist yet, not following a link at `p`. A stale
/// temp file from an interrupted run is removed and the creation tried once more.
fn create_new(p: &Path, mode: u32) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(p)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(p)?;
            open()
        }
        other => other,
    }
}

/// The temp name beside `dest`: fixed per destination, so a run interrupted by a
/// crash leaves at most one, which the next write to the same file reuses.
fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = if name.len() > 200 {
        format!(".tenet-new.{:016x}", fnv1a(name.as_bytes()))
    } else {
        format!(".{name}.tenet-new")
    };
    dest.with_file_name(tmp)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{symlink as link, write};

    fn abs(s: &str) -> AbsPath {
        AbsPath::parse(s).unwrap()
    }

    #[test]
    fn resolves_beneath_the_root_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let base = root.base().to_path_buf();
        fs::create_dir_all(base.join("etc/real")).unwrap();
        link("real", &base.join("etc/inside"));
        link("/tmp", &base.join("etc/out_abs"));
        link("../../..", &base.join("etc/out_rel"));
        link("loop2", &base.join("etc/loop1"));
        link("loop1", &base.join("etc/loop2"));
        link(
            &base.join("etc/real").to_string_lossy(),
            &base.join("etc/abs_inside"),
        );

        let r = |p: &str, f| root.resolve(&abs(p), f);
        assert_eq!(r("/etc/x", Follow::Parent).unwrap(), base.join("etc/x"));
        assert_eq!(
            r("/etc/inside/x", Follow::Parent).unwrap(),
            base.join("etc/real/x")
        );
        assert_eq!(
            r("/etc/abs_inside/x", Follow::Parent).unwrap(),
            base.join("etc/real/x")
        );
        // The link itself is not followed with Follow::Parent ...
        assert_eq!(
            r("/etc/out_abs", Follow::Parent).unwrap(),
            base.join("etc/out_abs")
        );
        // ... but it is with Follow::All, and it leaves the root.
        assert!(matches!(
            r("/etc/out_abs", Follow::All),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            r("/etc/out_abs/passwd", Follow::Parent),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            r("/etc/out_rel/x", Follow::Parent),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            r("/etc/loop1/x", Follow::Parent),
            Err(PathError::Loop { .. })
        ));
        assert_eq!(
            r("/missing/a/b", Follow::All).unwrap(),
            base.join("missing/a/b")
        );
        write(&base.join("etc/file"), "x");
        assert!(matches!(
            r("/etc/file/x", Follow::Parent),
            Err(PathError::NotDir { .. })
        ));
    }

    #[test]
    fn batch_writes_atomically_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        for writes in [1, 100] {
            let mut b = Batch::new(&root, writes);
            let paths: Vec<PathBuf> = (0..writes)
                .map(|i| root.base().join(format!("d{writes}/sub/f{i}")))
                .collect();
            for (i, p) in paths.iter().enumerate() {
                b.write_file(
                    i,
                    p,
                    format!("content {i}\n").as_bytes(),
                    Attrs {
                        mode: Some(0o640),
                        ..Attrs::default()
                    },
                )
                .unwrap();
                assert!(!p.exists(), "nothing is visible before commit");
            }
            assert!(b.commit().is_empty());
            for (i, p) in paths.iter().enumerate() {
                assert_eq!(fs::read_to_string(p).unwrap(), format!("content {i}\n"));
                assert_eq!(
                    fs::metadata(p).unwrap().permissions().mode() & 0o7777,
                    0o640
                );
            }
            let names: Vec<_> = fs::read_dir(root.base().join(format!("d{writes}/sub")))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), writes, "no temp files left: {names:?}");
        }
    }

    #[test]
    fn a_dropped_batch_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let p = root.base().join("f");
        write(&p, "old");
        let mut b = Batch::new(&root, 1);
        b.write_file(0, &p, b"new", Attrs::default()).unwrap();
        drop(b);
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(fs::read_dir(root.base()).unwrap().count(), 1);
    }

    /// A file observed, then swapped before its bytes are read, is never read through
    /// the swap: a symlink out of the root, a FIFO, another file. The file as observed
    /// reads back.
    #[test]
    fn a_file_swapped_after_it_was_observed_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        write(&outside, "secret outside the root");
        let root = dir.path().join("root");
        let p = root.join("f");
        write(&p, "managed");
        let seen = fs::symlink_metadata(&p).unwrap();
        assert_eq!(read_seen(&p, &seen).unwrap(), b"managed");

        let swaps: [(&str, &dyn Fn()); 3] = [
            ("a symlink out of the root", &|| {
                crate::test_util::symlink(outside.to_str().unwrap(), &p)
            }),
            ("a FIFO", &|| {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }),
            ("another file", &|| write(&p, "managed")),
        ];
        for (what, swap) in swaps {
            remove_if_present(&p).unwrap();
            swap();
            let err = read_seen(&p, &seen).expect_err(what);
            assert!(err.to_string().contains("changed while"), "{what}: {err}");
        }
    }
}
