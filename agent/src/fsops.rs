//! The only module that writes to the managed system.
//!
//! [`Root`] maps the policy's absolute paths beneath the configured root, through
//! directory descriptors: each component is opened on its own, without following a
//! link (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or `openat` with
//! `O_NOFOLLOW` where the kernel lacks `openat2`), and a symlink is followed by the
//! walk itself, only when the link rules below allow it. Everything after resolution
//! acts through the descriptor of the directory resolution verified (`*at` calls,
//! `O_NOFOLLOW` on the last component), so no path string is handed to the kernel to
//! resolve again between the check and the use.
//!
//! A symlink is followed only when the kernel's `protected_symlinks` rule would
//! follow it (the link is owned by root or by the owner of its directory, or that
//! directory is not sticky and world-writable), and when it is no unsafe ownership
//! change: once the walk passes a directory or link owned by a user other than root,
//! every later component and every link target must be owned by that same user (that
//! user could point it anywhere). A path that breaks either rule is
//! [`PathError::is_blocked`]: its promise is blocked, naming the link and its owner.
//!
//! [`Batch`] makes every change atomic: new content goes to a temp file beside its
//! destination, is made durable, then renamed over the destination, and the
//! directory is fsynced. A batch of many writes flushes them with one `syncfs` before
//! any rename instead of one fsync each (0.5 ms per file on a virtio disk), which
//! keeps the same guarantee: no rename happens before the data it exposes is on
//! disk, so a crash leaves either the old or the new file. [`Root::read_seen`] reads
//! a managed file only if it is still the file observed.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read as _, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use tenet_policies::model::AbsPath;

/// Most bytes read from a file a user other than root could have grown (one not
/// root's, group- or world-writable, or in a directory not only root's): its
/// promise fails past that, before the agent's memory runs out.
pub const MAX_USER_FILE_BYTES: u64 = 64 << 20;

/// Symlinks followed while resolving one path before it counts as a loop (as Linux's ELOOP).
const MAX_LINK_HOPS: u32 = 40;

/// Above this many file writes a batch flushes with one `syncfs` instead of one fsync per file.
const SYNCFS_THRESHOLD: usize = 16;

/// Directory descriptors a batch keeps at most (for its renames and fsyncs); past
/// that it keeps a directory's path and finds it again when it commits, so a batch
/// over many directories stays within the default soft `RLIMIT_NOFILE` (1024).
const MAX_BATCH_DIRS: usize = 256;

/// Directory descriptors kept for a run at most; past that the cache starts over, so a
/// policy over many directories never runs out of descriptors (`RLIMIT_NOFILE`).
const MAX_CACHED_DIRS: usize = 256;

/// Set (to anything) in the environment, resolution uses `openat` with `O_NOFOLLOW`
/// as on a kernel without `openat2`: the same checks, one fewer kernel guard. For
/// tests, and for sandboxes whose seccomp filter refuses `openat2`.
pub const NO_OPENAT2_ENV: &str = "TENET_NO_OPENAT2";

/// A user id, shown with its name when the system knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uid(pub u32);

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.0)) {
            Ok(Some(u)) => write!(f, "uid {} ({})", self.0, u.name),
            _ => write!(f, "uid {}", self.0),
        }
    }
}

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
    /// A link the kernel's `protected_symlinks` rule would not follow: in a sticky,
    /// world-writable directory and owned neither by root nor by the directory's owner.
    #[error(
        "{path}: not following symlink {link}, owned by {owner}: it is in the sticky \
         world-writable directory {dir}, owned by {dir_owner}"
    )]
    ForeignLink {
        /// The policy path.
        path: String,
        /// The link.
        link: PathBuf,
        /// Its owner.
        owner: Uid,
        /// The directory holding it.
        dir: PathBuf,
        /// That directory's owner.
        dir_owner: Uid,
    },
    /// A component owned by someone other than the user who owns what leads to it
    /// (a directory or link that user could point anywhere).
    #[error(
        "{path}: not going from {from}, owned by {from_owner}, to {component}, owned by \
         {owner}: {from_owner} could redirect it"
    )]
    UnsafeOwner {
        /// The policy path.
        path: String,
        /// The directory or link owned by a user other than root.
        from: PathBuf,
        /// Its owner.
        from_owner: Uid,
        /// What it leads to.
        component: PathBuf,
        /// That component's owner.
        owner: Uid,
    },
    /// A file or link with more than one name, in a directory where someone could
    /// have linked another's file: a directory owned by a user other than root (and
    /// the file is not that user's), or one a non-root group or every user may write.
    #[error(
        "{path}: not touching it: a {what} with {links} names, owned by {owner}, in {dir}, \
         where {writers} could have linked it from elsewhere"
    )]
    HardLink {
        /// The policy path.
        path: String,
        /// "file" or "link".
        what: &'static str,
        /// How many names it has.
        links: u64,
        /// Its owner.
        owner: Uid,
        /// The directory holding it.
        dir: PathBuf,
        /// Who may write to that directory.
        writers: String,
    },
    /// A directory resolution verified was replaced since (found again, it is no
    /// longer a directory, or a link).
    #[error("{path}: {component} changed while it was in use; the next run looks again")]
    Changed {
        /// The host path.
        path: String,
        /// The component.
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

impl PathError {
    /// Whether the path is refused because a local user could redirect it: the
    /// promise is blocked rather than failed.
    pub fn is_blocked(&self) -> bool {
        matches!(self, Self::ForeignLink { .. } | Self::UnsafeOwner { .. })
    }
}

impl From<PathError> for io::Error {
    fn from(e: PathError) -> Self {
        match e {
            PathError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => source,
            e => io::Error::other(e.to_string()),
        }
    }
}

/// Whether the last component of a path is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Resolve the parent only; the path itself may be a link (files, links, absent paths).
    Parent,
    /// Follow a link at the end too, as long as it stays inside the root (edited files).
    All,
}

/// A directory held open (`O_PATH`): the object resolution verified, whatever
/// happens to its name afterwards.
#[derive(Debug, Clone)]
struct DirFd {
    fd: Arc<OwnedFd>,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl DirFd {
    fn of(fd: OwnedFd) -> io::Result<Self> {
        let st = rustix::fs::fstat(&fd)?;
        Ok(Self {
            fd: Arc::new(fd),
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode,
        })
    }

    /// The directory opened for reading (listing, fsync): `O_PATH` allows neither.
    fn open_read(&self) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &*self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }
}

/// What resolution verified during a run: directory descriptors by their path
/// relative to the root, and paths found missing.
#[derive(Debug, Default)]
struct Cache {
    dirs: HashMap<PathBuf, DirFd>,
    missing: HashSet<PathBuf>,
}

/// What a step of a walk is, for the ownership rule.
#[derive(Debug, Clone)]
struct Owned {
    uid: u32,
    /// Its policy path, for messages.
    at: PathBuf,
}

/// The directory every policy path is resolved beneath: `/` in production, a sandbox in tests.
#[derive(Debug)]
pub struct Root {
    base: PathBuf,
    base_fd: DirFd,
    /// Directories resolution verified, held open, and paths found missing. Cleared
    /// by [`Root::forget`] after every apply; bounded by [`MAX_CACHED_DIRS`].
    cache: Mutex<Cache>,
    /// The process umask, so a file created with the wanted mode needs no chmod.
    umask: u32,
    /// Whether to try `openat2` (false once the kernel said it has none).
    openat2: AtomicBool,
}

impl Root {
    /// A root at `base`, which must be an existing directory (canonicalised here).
    pub fn new(base: &Path) -> io::Result<Self> {
        Self::with_openat2(base, std::env::var_os(NO_OPENAT2_ENV).is_none())
    }

    /// A root at `base` that uses `openat2` only when `openat2` is true (and the kernel has it).
    pub fn with_openat2(base: &Path, openat2: bool) -> io::Result<Self> {
        let base = fs::canonicalize(base)?;
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            &base,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match io::Error::from(e) {
            e if e.kind() == io::ErrorKind::NotADirectory => io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", base.display()),
            ),
            e => e,
        })?;
        // Reading the umask means setting it; put the old one straight back.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        Ok(Self {
            base,
            base_fd: DirFd::of(fd)?,
            cache: Mutex::new(Cache::default()),
            umask: old.bits(),
            openat2: AtomicBool::new(openat2),
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
    /// while they stay inside it and the link rules (module doc) allow them. Every
    /// directory on the way is opened and kept open for the run, so what is later
    /// done at the returned path is done in the very directories checked here.
    ///
    /// A missing component ends the walk: nothing below it can be a link yet.
    pub fn resolve(&self, p: &AbsPath, follow: Follow) -> Result<PathBuf, PathError> {
        let shown = p.to_string();
        let mut queue: VecDeque<OsString> = p
            .relative()
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        // The directories walked into, below the root, with their relative path.
        let mut stack: Vec<DirFd> = Vec::new();
        let mut rel = PathBuf::new();
        let mut prev = Owned {
            uid: self.base_fd.uid,
            at: PathBuf::from("/"),
        };
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                if stack.pop().is_none() {
                    if !self.is_host_root() {
                        return Err(PathError::Escapes {
                            path: shown,
                            link: Path::new("/").join(&rel),
                        });
                    }
                } else {
                    rel.pop();
                }
                let dir = stack.last().unwrap_or(&self.base_fd);
                let at = Path::new("/").join(&rel);
                check_owner(&shown, &prev, dir.uid, &at)?;
                prev = Owned { uid: dir.uid, at };
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let next = rel.join(&c);
            let last = queue.is_empty();
            if last && follow == Follow::Parent {
                return Ok(self.base.join(next));
            }
            let shown_next = Path::new("/").join(&next);
            if let Some(d) = self.cached(&next) {
                check_owner(&shown, &prev, d.uid, &shown_next)?;
                prev = Owned {
                    uid: d.uid,
                    at: shown_next,
                };
                stack.push(d);
                rel = next;
                continue;
            }
            if self.known_missing(&next) {
                let mut out = self.base.join(next);
                out.extend(queue.drain(..));
                return Ok(out);
            }
            let dir = stack.last().unwrap_or(&self.base_fd).clone();
            let io_err = |source| PathError::Io {
                path: shown.clone(),
                component: shown_next.clone(),
                source,
            };
            let fd = match self.open_path(&dir, &c) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.remember_missing(&next);
                    let mut out = self.base.join(next);
                    out.extend(queue.drain(..));
                    return Ok(out);
                }
                Err(e) => return Err(io_err(e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| io_err(e.into()))?;
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if kind == rustix::fs::FileType::Symlink {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(PathError::Loop { path: shown });
                }
                may_follow(
                    &shown,
                    &dir,
                    &Path::new("/").join(&rel),
                    st.st_uid,
                    &shown_next,
                )?;
                if st.st_nlink > 1
                    && let Some(writers) = others_may_link(&dir, st.st_uid)
                {
                    return Err(PathError::HardLink {
                        path: shown,
                        what: "link",
                        links: st.st_nlink,
                        owner: Uid(st.st_uid),
                        dir: Path::new("/").join(&rel),
                        writers,
                    });
                }
                check_owner(&shown, &prev, st.st_uid, &shown_next)?;
                prev = Owned {
                    uid: st.st_uid,
                    at: shown_next.clone(),
                };
                let target =
                    rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(|e| io_err(e.into()))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
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
                            link: shown_next,
                        });
                    };
                    stack.clear();
                    rel = PathBuf::new();
                    check_owner(&shown, &prev, self.base_fd.uid, Path::new("/"))?;
                    prev = Owned {
                        uid: self.base_fd.uid,
                        at: PathBuf::from("/"),
                    };
                    comps.extend(rest.components().filter_map(normal_or_parent));
                } else {
                    comps.extend(target.components().filter_map(normal_or_parent));
                }
                for c in comps.into_iter().rev() {
                    queue.push_front(c);
                }
                continue;
            }
            let is_dir = kind == rustix::fs::FileType::Directory;
            if !last && !is_dir {
                return Err(PathError::NotDir {
                    path: shown,
                    component: shown_next,
                });
            }
            if is_dir {
                check_owner(&shown, &prev, st.st_uid, &shown_next)?;
                prev = Owned {
                    uid: st.st_uid,
                    at: shown_next,
                };
                let d = DirFd {
                    fd: Arc::new(fd),
                    uid: st.st_uid,
                    gid: st.st_gid,
                    mode: st.st_mode,
                };
                self.remember_dir(&next, &d);
                stack.push(d);
                rel = next;
                continue;
            }
            if hops > 0 {
                // Reached through a link: what it leads to must be the link owner's too.
                check_owner(&shown, &prev, st.st_uid, &shown_next)?;
            }
            return Ok(self.base.join(next));
        }
        Ok(self.base.join(rel))
    }

    /// A path beneath the root as the policy names it (`/etc/x`), for messages.
    pub fn policy_path(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(&self.base) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => host.to_path_buf(),
        }
    }

    /// Forgets what resolution learnt and closes the directories it kept: called
    /// after anything that may turn a directory into something else (links,
    /// removals), and after every apply.
    pub(crate) fn forget(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.dirs.clear();
            c.missing.clear();
        }
    }

    /// The `lstat` of a resolved path, taken in its verified parent directory.
    pub fn lstat(&self, path: &Path) -> io::Result<fs::Metadata> {
        let (dir, name) = self.parent(path, false)?;
        let fd = rustix::fs::openat(
            &*dir.fd,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).metadata()
    }

    /// The target of the link at a resolved path.
    pub fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let (dir, name) = self.parent(path, false)?;
        let t = rustix::fs::readlinkat(&*dir.fd, &name, Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// Whether the directory at a resolved path (not a link to one) has no entries.
    pub fn is_empty_dir(&self, path: &Path) -> io::Result<bool> {
        let dir = self.open_dir_at(path)?;
        let mut entries = rustix::fs::Dir::new(dir.open_read()?)?;
        for e in entries.by_ref() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The bytes of the regular file at a resolved path, opened without following a
    /// link or waiting on a FIFO.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let (f, meta, dir) = self.open_file(path)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.policy_path(path).display()),
            ));
        }
        let out = self.read_bounded(path, f, &meta, &dir)?;
        Ok(out)
    }

    /// Reads the regular file at `path` that `seen` (its `lstat`, taken while
    /// observing) describes. It is opened in its verified directory without following
    /// a symlink or waiting on a FIFO, and its bytes are returned only if what was
    /// opened is that same file, unchanged (device, inode, size, mtime and ctime): a
    /// file swapped for a link between the look and the read is never read, and what
    /// the stat cache records is the stat of the bytes read. A swap is an error; the
    /// next run looks again.
    pub fn read_seen(&self, path: &Path, seen: &fs::Metadata) -> io::Result<Vec<u8>> {
        let changed = || {
            io::Error::other(format!(
                "{} changed while it was being read; the next run looks again",
                path.display()
            ))
        };
        let (file, now, dir) = self.open_file(path).map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                changed()
            } else {
                e
            }
        })?;
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
        let out = self.read_bounded(path, file, &now, &dir)?;
        Ok(out)
    }

    /// Every entry beneath the directory at a resolved path (not a link to one), depth
    /// first and sorted by name, with its path relative to it and its `lstat`. Links
    /// are listed, never followed.
    pub fn walk_tree(&self, path: &Path) -> io::Result<Vec<(PathBuf, fs::Metadata)>> {
        let top = self.open_dir_at(path)?;
        let mut out = Vec::new();
        walk_into(&top, &PathBuf::new(), &mut out, 0)?;
        Ok(out)
    }

    /// Opens the object at a resolved path in its verified directory, not following a
    /// link or waiting on a FIFO, with its `fstat`. A non-directory with several names
    /// is refused where another user could have hard-linked it there from elsewhere
    /// (possible where the kernel's `protected_hardlinks` is off; see `others_may_link`).
    fn open_file(&self, path: &Path) -> io::Result<(File, fs::Metadata, DirFd)> {
        let (dir, name) = self.parent(path, false)?;
        let fd = rustix::fs::openat(
            &*dir.fd,
            &name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_dir()
            && meta.nlink() > 1
            && let Some(writers) = others_may_link(&dir, meta.uid())
        {
            let at = self.policy_path(path);
            return Err(io::Error::other(
                PathError::HardLink {
                    path: at.display().to_string(),
                    what: "file",
                    links: meta.nlink(),
                    owner: Uid(meta.uid()),
                    dir: at.parent().map(Path::to_path_buf).unwrap_or_default(),
                    writers,
                }
                .to_string(),
            ));
        }
        Ok((file, meta, dir))
    }

    /// The bytes of `file` (`meta` its `fstat`, in `dir`). A file a user other than
    /// root could have grown (it is not root's, group or world can write it, or
    /// its directory is not only root's) is read only up to
    /// [`MAX_USER_FILE_BYTES`]: past that its promise fails, instead of a sparse
    /// terabyte taking the agent's memory. Memory is reserved from the size only
    /// up to that bound.
    fn read_bounded(
        &self,
        path: &Path,
        file: File,
        meta: &fs::Metadata,
        dir: &DirFd,
    ) -> io::Result<Vec<u8>> {
        let mode = meta.mode();
        let user_sized = meta.uid() != 0
            || mode & 0o002 != 0
            || (mode & 0o020 != 0 && meta.gid() != 0)
            || others_may_link(dir, 0).is_some();
        let limit = if user_sized {
            MAX_USER_FILE_BYTES
        } else {
            u64::MAX
        };
        let too_large = |size: u64| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "{}: {size} bytes or more, over the {MAX_USER_FILE_BYTES} bytes read from \
                     a file a user other than root can write",
                    self.policy_path(path).display()
                ),
            )
        };
        if meta.len() > limit {
            return Err(too_large(meta.len()));
        }
        let reserve = meta.len().min(MAX_USER_FILE_BYTES);
        let mut out = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        file.take(limit.saturating_add(1)).read_to_end(&mut out)?;
        if out.len() as u64 > limit {
            return Err(too_large(out.len() as u64));
        }
        Ok(out)
    }

    /// The directory at a resolved path itself, opened without following a link.
    fn open_dir_at(&self, path: &Path) -> io::Result<DirFd> {
        let rel = self.relative(path)?;
        self.dir(&rel, None).map_err(io::Error::from)
    }

    /// The relative path of a host path beneath the root.
    fn relative(&self, path: &Path) -> io::Result<PathBuf> {
        path.strip_prefix(&self.base)
            .map(Path::to_path_buf)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not beneath the root", path.display()),
                )
            })
    }

    /// The verified directory holding a resolved path, and the path's last name.
    /// With `create`, missing directories are made (0755; in a directory owned by a
    /// user other than root they are given to that user, who could have made them),
    /// each recorded in `created` with its parent.
    fn parent(&self, path: &Path, create: bool) -> io::Result<(DirFd, OsString)> {
        self.parent_creating(path, create.then(Vec::new).as_mut())
    }

    fn parent_creating(
        &self,
        path: &Path,
        created: Option<&mut Vec<(PathBuf, DirFd)>>,
    ) -> io::Result<(DirFd, OsString)> {
        let rel = self.relative(path)?;
        let name = match rel.components().next_back() {
            Some(Component::Normal(n)) => n.to_os_string(),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} has no parent inside the root", path.display()),
                ));
            }
        };
        let dir_rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = self.dir(&dir_rel, created).map_err(io::Error::from)?;
        Ok((dir, name))
    }

    /// The directory at `rel` (relative, as resolution returns it: no link on the
    /// way), from the cache or walked again from the root following no link at all,
    /// under the ownership rule. With `created`, missing directories are made.
    fn dir(
        &self,
        rel: &Path,
        mut created: Option<&mut Vec<(PathBuf, DirFd)>>,
    ) -> Result<DirFd, PathError> {
        if rel.as_os_str().is_empty() {
            return Ok(self.base_fd.clone());
        }
        if let Some(d) = self.cached(rel) {
            return Ok(d);
        }
        let shown = self.base.join(rel).display().to_string();
        let mut cur = self.base_fd.clone();
        let mut walked = PathBuf::new();
        let mut prev = Owned {
            uid: cur.uid,
            at: PathBuf::from("/"),
        };
        for c in rel.components() {
            let Component::Normal(c) = c else {
                return Err(PathError::Changed {
                    path: shown,
                    component: Path::new("/").join(&walked),
                });
            };
            walked.push(c);
            let at = Path::new("/").join(&walked);
            if let Some(d) = self.cached(&walked) {
                check_owner(&shown, &prev, d.uid, &at)?;
                prev = Owned { uid: d.uid, at };
                cur = d;
                continue;
            }
            let io_err = |source| PathError::Io {
                path: shown.clone(),
                component: at.clone(),
                source,
            };
            let (opened, made) = match self.open_path(&cur, c) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && created.is_some() => {
                    let made = match rustix::fs::mkdirat(&*cur.fd, c, Mode::from_raw_mode(0o755)) {
                        Ok(()) => true,
                        Err(rustix::io::Errno::EXIST) => false,
                        Err(e) => return Err(io_err(e.into())),
                    };
                    (self.open_path(&cur, c).map_err(io_err)?, made)
                }
                other => (other.map_err(io_err)?, false),
            };
            let mut d = DirFd::of(opened).map_err(io_err)?;
            if rustix::fs::FileType::from_raw_mode(d.mode) != rustix::fs::FileType::Directory {
                return Err(PathError::Changed {
                    path: shown,
                    component: at,
                });
            }
            if made && cur.uid != 0 && d.uid == 0 {
                // Given through the descriptor of the directory just checked: the
                // user may already have put something else under its name.
                rustix::fs::chownat(
                    &*d.fd,
                    "",
                    Some(rustix::fs::Uid::from_raw(cur.uid)),
                    Some(rustix::fs::Gid::from_raw(cur.gid)),
                    AtFlags::EMPTY_PATH,
                )
                .map_err(|e| io_err(e.into()))?;
                d.uid = cur.uid;
                d.gid = cur.gid;
            }
            check_owner(&shown, &prev, d.uid, &at)?;
            if let Some(list) = created.as_deref_mut() {
                list.push((walked.clone(), cur.clone()));
            }
            prev = Owned { uid: d.uid, at };
            self.remember_dir(&walked, &d);
            cur = d;
        }
        Ok(cur)
    }

    /// Opens one name in `dir` as `O_PATH`, never following a link (a link opens as itself).
    fn open_path(&self, dir: &DirFd, name: &OsStr) -> io::Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if self.openat2.load(Ordering::Relaxed) {
            match rustix::fs::openat2(
                &*dir.fd,
                name,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(rustix::io::Errno::NOSYS) => {
                    self.openat2.store(false, Ordering::Relaxed);
                }
                other => return Ok(other?),
            }
        }
        Ok(rustix::fs::openat(&*dir.fd, name, flags, Mode::empty())?)
    }

    fn cached(&self, rel: &Path) -> Option<DirFd> {
        self.cache
            .lock()
            .ok()
            .and_then(|c| c.dirs.get(rel).cloned())
    }

    fn known_missing(&self, rel: &Path) -> bool {
        self.cache
            .lock()
            .map(|c| c.missing.contains(rel))
            .unwrap_or(false)
    }

    fn remember_dir(&self, rel: &Path, d: &DirFd) {
        if let Ok(mut c) = self.cache.lock() {
            if c.dirs.len() >= MAX_CACHED_DIRS {
                c.dirs.clear();
            }
            c.missing.remove(rel);
            c.dirs.insert(rel.to_path_buf(), d.clone());
        }
    }

    fn remember_missing(&self, rel: &Path) {
        if let Ok(mut c) = self.cache.lock() {
            if c.missing.len() >= 4 * MAX_CACHED_DIRS {
                c.missing.clear();
            }
            c.missing.insert(rel.to_path_buf());
        }
    }
}

/// The kernel's `protected_symlinks` rule: a link in a sticky, world-writable
/// directory is followed only if root or the directory's owner owns it.
fn may_follow(
    path: &str,
    dir: &DirFd,
    dir_at: &Path,
    link_uid: u32,
    link: &Path,
) -> Result<(), PathError> {
    let sticky_and_open = dir.mode & 0o1000 != 0 && dir.mode & 0o002 != 0;
    if sticky_and_open && link_uid != 0 && link_uid != dir.uid {
        return Err(PathError::ForeignLink {
            path: path.to_string(),
            link: link.to_path_buf(),
            owner: Uid(link_uid),
            dir: dir_at.to_path_buf(),
            dir_owner: Uid(dir.uid),
        });
    }
    Ok(())
}

/// The ownership rule: after a directory or link owned by a user other than root,
/// the next component (`at`, owned by `uid`) must be that user's too.
fn check_owner(path: &str, prev: &Owned, uid: u32, at: &Path) -> Result<(), PathError> {
    if unsafe_transition(prev.uid, uid) {
        return Err(PathError::UnsafeOwner {
            path: path.to_string(),
            from: prev.at.clone(),
            from_owner: Uid(prev.uid),
            component: at.to_path_buf(),
            owner: Uid(uid),
        });
    }
    Ok(())
}

/// Who, besides root, could have hard-linked into `dir` a file owned by `uid` from
/// elsewhere (where the kernel's `protected_hardlinks` is off): every user in a
/// world-writable directory, a group's members in a directory that group may write,
/// the owner of a directory owned by a user other than root, unless the file is theirs.
fn others_may_link(dir: &DirFd, uid: u32) -> Option<String> {
    if dir.mode & 0o002 != 0 {
        Some("every user".to_string())
    } else if dir.mode & 0o020 != 0 && dir.gid != 0 {
        Some(format!("members of group {}", dir.gid))
    } else if unsafe_transition(dir.uid, uid) {
        Some(Uid(dir.uid).to_string())
    } else {
        None
    }
}

/// Whether going from something owned by `from` to something owned by `to` hands
/// the walk to someone `from` does not trust: `from` is not root and `to` is not `from`.
fn unsafe_transition(from: u32, to: u32) -> bool {
    from != 0 && from != to
}

/// Deepest directory nesting a tree walk descends into.
const MAX_WALK_DEPTH: usize = 256;

fn walk_into(
    dir: &DirFd,
    rel: &Path,
    out: &mut Vec<(PathBuf, fs::Metadata)>,
    depth: usize,
) -> io::Result<()> {
    if depth > MAX_WALK_DEPTH {
        return Err(io::Error::other(format!(
            "{}: directories nested more than {MAX_WALK_DEPTH} deep",
            rel.display()
        )));
    }
    let mut names: Vec<OsString> = Vec::new();
    for e in rustix::fs::Dir::new(dir.open_read()?)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    for n in names {
        let fd = match rustix::fs::openat(
            &*dir.fd,
            &n,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let sub = rel.join(&n);
        let d = DirFd::of(fd.try_clone()?)?;
        let meta = File::from(fd).metadata()?;
        let is_dir = meta.is_dir();
        out.push((sub.clone(), meta));
        if is_dir {
            walk_into(&d, &sub, out, depth + 1)?;
        }
    }
    Ok(())
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
    /// The verified directory the temp file was made in, and is renamed in, if the
    /// batch keeps its descriptor; else it is found again by `at`.
    dir: Option<DirFd>,
    /// That directory's host path.
    at: PathBuf,
    tmp: OsString,
    name: OsString,
    /// The destination's host path, for the directories to fsync.
    dest: PathBuf,
    unit: usize,
}

/// Changes being made by one engine phase, committed together.
#[derive(Debug)]
pub struct Batch<'r> {
    root: &'r Root,
    staged: Vec<Staged>,
    /// Directories to fsync at commit, by host path.
    dirs: BTreeSet<PathBuf>,
    /// The descriptors kept, by host path: at most [`MAX_BATCH_DIRS`].
    kept: HashMap<PathBuf, DirFd>,
    per_file_fsync: bool,
}

impl<'r> Batch<'r> {
    /// A batch expected to write about `writes` files.
    pub fn new(root: &'r Root, writes: usize) -> Self {
        Self {
            root,
            staged: Vec::new(),
            dirs: BTreeSet::new(),
            kept: HashMap::new(),
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
        let (found, name) = self.parent(dest)?;
        let at = dest.parent().unwrap_or(&self.root.base).to_path_buf();
        let kept = self.keep(&at, &found);
        let dir = kept.clone().unwrap_or(found);
        let tmp = temp_name(&name);
        let mode = attrs.mode.unwrap_or(0o644);
        let mut f = create_new(&dir, &tmp, mode)?;
        let staged = (|| {
            f.write_all(content)?;
            // Owner first: a chown clears setuid and setgid, so the mode comes after.
            if attrs.uid.is_some() || attrs.gid.is_some() {
                std::os::unix::fs::fchown(&f, attrs.uid, attrs.gid)?;
            }
            // open() applied the umask; set the mode only where it took bits away.
            if mode & !self.root.umask != mode || mode & 0o7000 != 0 {
                f.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            if self.per_file_fsync {
                f.sync_all()?;
            }
            Ok(())
        })();
        drop(f);
        if let Err(e) = staged {
            let _ = rustix::fs::unlinkat(&*dir.fd, &tmp, AtFlags::empty());
            return Err(e);
        }
        self.staged.push(Staged {
            dir: kept,
            at,
            tmp,
            name,
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
        let (found, name) = self.parent(dest)?;
        if replace == Replace::Nothing {
            rustix::fs::symlinkat(target, &*found.fd, &name)?;
            self.touched(dest);
            return Ok(());
        }
        let at = dest.parent().unwrap_or(&self.root.base).to_path_buf();
        let kept = self.keep(&at, &found);
        let dir = kept.clone().unwrap_or(found);
        let tmp = temp_name(&name);
        unlink_if_present(&dir, &tmp)?;
        rustix::fs::symlinkat(target, &*dir.fd, &tmp)?;
        if replace == Replace::EmptyDir {
            rustix::fs::unlinkat(&*dir.fd, &name, AtFlags::REMOVEDIR)?;
            self.root.forget();
        }
        self.staged.push(Staged {
            dir: kept,
            at,
            tmp,
            name,
            dest: dest.to_path_buf(),
            unit,
        });
        Ok(())
    }

    /// Removes a path now (a removal is atomic by itself); a directory only when
    /// `recursive` or empty. A tree is removed through descriptors, never following
    /// a link inside it.
    pub fn remove(&mut self, path: &Path, recursive: bool) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let st = rustix::fs::statat(&*dir.fd, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            if recursive {
                remove_tree(&dir, &name, 0)?;
            } else {
                rustix::fs::unlinkat(&*dir.fd, &name, AtFlags::REMOVEDIR)?;
            }
            self.root.forget();
        } else {
            rustix::fs::unlinkat(&*dir.fd, &name, AtFlags::empty())?;
        }
        self.touched(path);
        Ok(())
    }

    /// Creates a directory and any missing parents (parents 0755), then sets
    /// attributes. A directory made in one a user other than root owns is given to
    /// that user unless `attrs` names an owner or group.
    pub fn make_dir(&mut self, path: &Path, attrs: Attrs) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let made = match rustix::fs::mkdirat(&*dir.fd, &name, Mode::from_raw_mode(0o755)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST)
                if rustix::fs::FileType::from_raw_mode(
                    rustix::fs::statat(&*dir.fd, &name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                ) == rustix::fs::FileType::Directory =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        self.touched(path);
        // Made in a directory a user other than root owns, with no owner or group
        // given, it is that user's, as the directories made on the way are: a
        // root-owned directory there would block every path beneath it.
        let ids = if made && dir.uid != 0 && attrs.uid.is_none() && attrs.gid.is_none() {
            (Some(dir.uid), Some(dir.gid))
        } else {
            (attrs.uid, attrs.gid)
        };
        self.set_attrs(
            path,
            Attrs {
                mode: Some(attrs.mode.unwrap_or(0o755)),
                uid: ids.0,
                gid: ids.1,
            },
        )
    }

    /// Sets mode and ids of an existing file or directory (never through a symlink),
    /// opened in its verified directory.
    pub fn set_attrs(&mut self, path: &Path, attrs: Attrs) -> io::Result<()> {
        let (f, _, _) = self.root.open_file(path)?;
        // Owner first: a chown clears setuid and setgid, so the mode comes after.
        if attrs.uid.is_some() || attrs.gid.is_some() {
            std::os::unix::fs::fchown(&f, attrs.uid, attrs.gid)?;
        }
        if let Some(mode) = attrs.mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.sync_all()
    }

    /// Makes every staged change durable and visible: flush the temp files, rename
    /// each over its destination, fsync each touched directory. Returns the units
    /// whose changes failed, with the error.
    pub fn commit(mut self) -> Vec<(usize, io::Error)> {
        let mut failed = Vec::new();
        if !self.per_file_fsync && !self.staged.is_empty() {
            let synced = self
                .root
                .base_fd
                .open_read()
                .and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from));
            if let Err(e) = synced {
                // Nothing is renamed unless it is known to be on disk.
                for s in std::mem::take(&mut self.staged) {
                    if let Ok(dir) = self.find(&s.at, s.dir.as_ref()) {
                        let _ = rustix::fs::unlinkat(&*dir.fd, &s.tmp, AtFlags::empty());
                    }
                    failed.push((s.unit, io::Error::new(e.kind(), format!("syncfs: {e}"))));
                }
            }
        }
        for s in std::mem::take(&mut self.staged) {
            let dir = match self.find(&s.at, s.dir.as_ref()) {
                Ok(dir) => dir,
                Err(e) => {
                    failed.push((s.unit, e));
                    continue;
                }
            };
            match rustix::fs::renameat(&*dir.fd, &s.tmp, &*dir.fd, &s.name) {
                Ok(()) => self.touched(&s.dest),
                Err(e) => {
                    let _ = rustix::fs::unlinkat(&*dir.fd, &s.tmp, AtFlags::empty());
                    failed.push((s.unit, e.into()));
                }
            }
        }
        for d in &self.dirs {
            let synced = self
                .find(d, self.kept.get(d))
                .and_then(|dir| dir.open_read())
                .and_then(|f| Ok(rustix::fs::fsync(&f)?));
            if let Err(e) = synced {
                tracing::warn!(dir = %d.display(), error = %e, "cannot fsync directory");
            }
        }
        failed
    }

    /// The descriptor to keep for the directory at host path `at`, verified as
    /// `dir`: the one kept for it already, else `dir` while the batch keeps fewer
    /// than [`MAX_BATCH_DIRS`]. Past that none: the directory is found again.
    fn keep(&mut self, at: &Path, dir: &DirFd) -> Option<DirFd> {
        if let Some(d) = self.kept.get(at) {
            return Some(d.clone());
        }
        if self.kept.len() >= MAX_BATCH_DIRS {
            return None;
        }
        self.kept.insert(at.to_path_buf(), dir.clone());
        Some(dir.clone())
    }

    /// The directory at host path `at`: the descriptor kept, or found again from
    /// the root following no link, under the ownership rule.
    fn find(&self, at: &Path, kept: Option<&DirFd>) -> io::Result<DirFd> {
        match kept {
            Some(d) => Ok(d.clone()),
            None => self.root.open_dir_at(at),
        }
    }

    /// The verified directory of `p` (missing directories made, each recorded for
    /// fsync with its parent) and `p`'s name.
    fn parent(&mut self, p: &Path) -> io::Result<(DirFd, OsString)> {
        let mut created = Vec::new();
        let found = self.root.parent_creating(p, Some(&mut created))?;
        for (rel, parent) in created {
            let host = self.root.base.join(&rel);
            if let Some(up) = host.parent() {
                self.keep(up, &parent);
                self.dirs.insert(up.to_path_buf());
            }
        }
        Ok(found)
    }

    /// Records that the directory holding `p` changed.
    fn touched(&mut self, p: &Path) {
        if let Some(up) = p.parent() {
            self.dirs.insert(up.to_path_buf());
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for s in &self.staged {
            if let Ok(dir) = self.find(&s.at, s.dir.as_ref()) {
                let _ = rustix::fs::unlinkat(&*dir.fd, &s.tmp, AtFlags::empty());
            }
        }
    }
}

/// Removes the directory `name` in `dir` and everything in it, through descriptors.
fn remove_tree(dir: &DirFd, name: &OsStr, depth: usize) -> io::Result<()> {
    if depth > MAX_WALK_DEPTH {
        return Err(io::Error::other(format!(
            "directories nested more than {MAX_WALK_DEPTH} deep"
        )));
    }
    let sub = DirFd::of(rustix::fs::openat(
        &*dir.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)?;
    let mut names = Vec::new();
    for e in rustix::fs::Dir::new(sub.open_read()?)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in names {
        let st = match rustix::fs::statat(&*sub.fd, &n, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            remove_tree(&sub, &n, depth + 1)?;
        } else {
            match rustix::fs::unlinkat(&*sub.fd, &n, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    rustix::fs::unlinkat(&*dir.fd, name, AtFlags::REMOVEDIR)?;
    Ok(())
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
            let dir = PathBuf::from(OsStr::from_bytes(line));
            if !dir.starts_with(root.base()) {
                continue;
            }
            // Listed and cleaned through the directory's descriptor, found again
            // without following a link.
            let Ok(d) = root.open_dir_at(&dir) else {
                continue;
            };
            let Ok(list) = d.open_read().and_then(|fd| Ok(rustix::fs::Dir::new(fd)?)) else {
                continue;
            };
            let names: Vec<OsString> = list
                .flatten()
                .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                .filter(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with('.') && n.ends_with(tenet_policies::TEMP_SUFFIX)
                })
                .collect();
            for n in names {
                unlink_if_present(&d, &n)?;
                removed += 1;
            }
        }
        fs::remove_file(entry.path())?;
    }
    Ok(removed)
}

/// Creates a file in `dir` that must not exist yet, not following a link at `name`.
/// A stale temp file from an interrupted run is removed and the creation tried once more.
fn create_new(dir: &DirFd, name: &OsStr, mode: u32) -> io::Result<File> {
    let open = || {
        rustix::fs::openat(
            &*dir.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
    };
    match open() {
        Err(rustix::io::Errno::EXIST) => {
            rustix::fs::unlinkat(&*dir.fd, name, AtFlags::empty())?;
            Ok(File::from(open()?))
        }
        other => Ok(File::from(other?)),
    }
}

/// The temp name beside `name`: fixed per destination, so a run interrupted by a
/// crash leaves at most one, which the next write to the same file reuses.
fn temp_name(name: &OsStr) -> OsString {
    let name = name.to_string_lossy();
    OsString::from(if name.len() > 200 {
        format!(".tenet-new.{:016x}", fnv1a(name.as_bytes()))
    } else {
        format!(".{name}.tenet-new")
    })
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

fn unlink_if_present(dir: &DirFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(&*dir.fd, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
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
        fs::create_dir(dir.path().join("root")).unwrap();
        let root = Root::new(&dir.path().join("root")).unwrap();
        let p = root.base().join("f");
        write(&p, "managed");
        let seen = fs::symlink_metadata(&p).unwrap();
        assert_eq!(root.read_seen(&p, &seen).unwrap(), b"managed");

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
            let err = root.read_seen(&p, &seen).expect_err(what);
            assert!(err.to_string().contains("changed while"), "{what}: {err}");
        }
    }

    /// The ownership rule itself: from root anything goes; from a user, only that
    /// user's own things.
    #[test]
    fn finding_01_ownership_rule_trusts_root_and_the_same_user_only() {
        assert!(!unsafe_transition(0, 0));
        assert!(!unsafe_transition(0, 1000));
        assert!(!unsafe_transition(1000, 1000));
        assert!(unsafe_transition(1000, 0));
        assert!(unsafe_transition(1000, 1001));
    }

    /// The protected_symlinks rule: a link in a sticky world-writable directory is
    /// followed only when root or the directory's owner owns it.
    #[test]
    fn finding_01_protected_symlinks_rule() {
        let dir = |mode: u32, uid: u32| DirFd {
            fd: Arc::new(
                rustix::fs::openat(rustix::fs::CWD, "/", OFlags::PATH, Mode::empty()).unwrap(),
            ),
            uid,
            gid: 0,
            mode: 0o040000 | mode,
        };
        let at = Path::new("/t");
        let l = Path::new("/t/l");
        assert!(may_follow("/p", &dir(0o1777, 0), at, 0, l).is_ok());
        assert!(may_follow("/p", &dir(0o1777, 7), at, 7, l).is_ok());
        assert!(may_follow("/p", &dir(0o0777, 0), at, 7, l).is_ok());
        assert!(may_follow("/p", &dir(0o1755, 0), at, 7, l).is_ok());
        let e = may_follow("/p", &dir(0o1777, 0), at, 65534, l).unwrap_err();
        assert!(e.is_blocked());
        assert!(e.to_string().contains("/t/l, owned by uid 65534"), "{e}");
    }

    /// Resolution through the library entry point, with and without `openat2`: a
    /// user's link to a root-owned directory, and a user's link in a sticky
    /// directory, are refused as blocked naming the link and its owner; root's own
    /// link is followed.
    #[test]
    fn finding_01_resolution_refuses_links_a_user_controls_with_and_without_openat2() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test chowns to nobody: run it as root"
        );
        for openat2 in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::with_openat2(dir.path(), openat2).unwrap();
            let base = root.base().to_path_buf();
            fs::create_dir_all(base.join("victim")).unwrap();
            fs::create_dir_all(base.join("home/alice")).unwrap();
            fs::create_dir_all(base.join("etc/real")).unwrap();
            std::os::unix::fs::lchown(base.join("home/alice"), Some(65534), None).unwrap();
            link("/victim", &base.join("home/alice/app"));
            std::os::unix::fs::lchown(base.join("home/alice/app"), Some(65534), None).unwrap();
            fs::create_dir_all(base.join("tmp")).unwrap();
            fs::set_permissions(base.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
            link("/victim", &base.join("tmp/cache"));
            std::os::unix::fs::lchown(base.join("tmp/cache"), Some(65534), None).unwrap();
            link("real", &base.join("etc/ok"));

            // Sandbox roots keep absolute link targets as host paths beneath the root.
            let abs_victim = base.join("victim").to_string_lossy().into_owned();
            fs::remove_file(base.join("home/alice/app")).unwrap();
            link(&abs_victim, &base.join("home/alice/app"));
            std::os::unix::fs::lchown(base.join("home/alice/app"), Some(65534), None).unwrap();
            fs::remove_file(base.join("tmp/cache")).unwrap();
            link(&abs_victim, &base.join("tmp/cache"));
            std::os::unix::fs::lchown(base.join("tmp/cache"), Some(65534), None).unwrap();

            let e = root
                .resolve(&abs("/home/alice/app/x.conf"), Follow::Parent)
                .unwrap_err();
            assert!(e.is_blocked(), "openat2={openat2}: {e}");
            assert!(
                e.to_string()
                    .contains("/home/alice/app, owned by uid 65534"),
                "{e}"
            );
            let e = root
                .resolve(&abs("/tmp/cache/x"), Follow::Parent)
                .unwrap_err();
            assert!(matches!(e, PathError::ForeignLink { .. }), "{e}");
            assert_eq!(
                root.resolve(&abs("/etc/ok/x"), Follow::Parent).unwrap(),
                base.join("etc/real/x")
            );
        }
    }
}
