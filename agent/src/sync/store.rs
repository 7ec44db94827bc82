//! The blob store: every cached blob by its SHA-256, loose or in a pack.
//!
//! ```text
//! STATE/blobs/
//!   sha256/<hex>            a loose blob (a sync that fetches fewer than 64 writes these)
//!   packs/<name>.pack       blobs written back to back by one sync that fetched many
//!   packs/<name>.idx        what the pack holds: hash, offset and size of each blob
//! ```
//!
//! A full sync of 10,010 files writes one pack and its index instead of 10,010 files:
//! the member writes the tree into its root anyway, and a second tree of small files
//! only for the cache doubled the inode work of a full sync. A pack is written under a
//! temporary name, flushed, and becomes visible when its index is renamed into place
//! (after the pack itself), so a crash leaves either a whole pack or litter that
//! [`Store::clean`] removes.
//!
//! Nothing read from here is trusted by where it lies: every blob, loose or packed, is
//! hashed against the signed manifest's entry as it is read ([`Store::read_into`]).
//! A blob found damaged is removed from the store (from its pack's index, for a packed
//! one), so that the next sync fetches it again. A pack whose index is damaged (bad
//! checksum or format, not a regular file) or whose pack file is missing or not a
//! regular file is removed, once the damage is recorded, to the same end; any other
//! failure to read a pack is an error, since it may hold the only copy of a blob.
//!
//! Index format, little-endian:
//! `b"TNPKIDX1"`, entry count (u64), then per entry the SHA-256 (32 bytes), offset
//! (u64) and size (u64), sorted by hash, and last the SHA-256 of everything before it.
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tenet_keys::fsio::{Overwrite, write_atomic};
use tenet_keys::{FileEntry, Sha256Sum, VerifyError, bundle};

/// The packs' directory, under the store's base (the state directory).
pub const PACKS: &str = "blobs/packs";
const PACK_EXT: &str = "pack";
const IDX_EXT: &str = "idx";
const MAGIC: &[u8; 8] = b"TNPKIDX1";
const ENTRY_LEN: usize = 32 + 8 + 8;
/// Fewer blobs than this in one sync are stored loose (a change of a few files writes
/// a few files, not a pack of its own).
pub const PACK_MIN: usize = 64;

/// Where a packed blob lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    pack: usize,
    offset: u64,
    size: u64,
}

#[derive(Debug)]
struct Pack {
    /// `<name>`: the pack is `<name>.pack`, its index `<name>.idx`.
    name: String,
    file: File,
    /// What its index lists: hash, offset, size.
    entries: Vec<(Sha256Sum, u64, u64)>,
}

/// More packs than this are merged into one by the next collection, whatever their
/// share of live blobs (each open store holds a descriptor per pack).
const MAX_PACKS: usize = 32;
/// The largest index read (about 1.4 million blobs).
const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// The blob store under a base directory (`BASE/blobs/sha256`, `BASE/blobs/packs`),
/// with the packs' indexes read once.
#[derive(Debug)]
pub struct Store {
    base: PathBuf,
    packs: Vec<Pack>,
    packed: HashMap<Sha256Sum, Slot>,
    /// Serialises the rewriting of indexes when damaged blobs are removed.
    forget: Mutex<()>,
}

impl Store {
    /// The store under `base`. A pack whose index is damaged (its checksum or format is
    /// wrong, it is not a regular file) or whose pack is missing is removed once
    /// `on_damage` has recorded it (its blobs are then missing, and fetched again). Any
    /// other failure to read a pack (permissions, I/O, descriptors) is an error: the
    /// pack may hold the only copy of blobs in force.
    pub fn open(base: &Path, on_damage: impl Fn(&str) -> io::Result<()>) -> io::Result<Store> {
        let mut store = Store {
            base: base.to_path_buf(),
            packs: Vec::new(),
            packed: HashMap::new(),
            forget: Mutex::new(()),
        };
        let dir = base.join(PACKS);
        let list = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(e),
        };
        let mut names: Vec<String> = Vec::new();
        for e in list {
            let name = e?.file_name();
            if let Some(stem) = name
                .to_str()
                .filter(|n| !n.starts_with('.'))
                .and_then(|n| n.strip_suffix(".idx"))
            {
                names.push(stem.to_string());
            }
        }
        names.sort();
        for name in names {
            let idx = dir.join(format!("{name}.{IDX_EXT}"));
            let pack = dir.join(format!("{name}.{PACK_EXT}"));
            let opened = read_index(&idx).and_then(|e| Ok((e, open_regular(&pack)?)));
            let (entries, file) = match opened {
                Ok(ok) => ok,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::NotFound
                    ) =>
                {
                    // Recorded first: a pack is never gone without the mark that
                    // fetches its blobs again. If it cannot be recorded, the pack is
                    // left in place (and ignored).
                    let what = format!("{}: {e}", idx.display());
                    match on_damage(&what).and_then(|()| remove_pack(&dir, &name)) {
                        Ok(()) => {}
                        Err(r) => tracing::warn!(
                            pack = %name,
                            error = %r,
                            "cannot set a damaged pack aside; it is ignored"
                        ),
                    }
                    continue;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("pack {}: {e}", pack.display()),
                    ));
                }
            };
            let at = store.packs.len();
            for (sha, offset, size) in &entries {
                store.packed.entry(*sha).or_insert(Slot {
                    pack: at,
                    offset: *offset,
                    size: *size,
                });
            }
            store.packs.push(Pack {
                name,
                file,
                entries,
            });
        }
        Ok(store)
    }

    /// Removes what an interrupted write left: temporary packs and indexes, and packs
    /// without an index.
    pub fn clean(base: &Path) -> io::Result<()> {
        let dir = base.join(PACKS);
        let list = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in list {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let orphan = name
                .strip_suffix(".pack")
                .is_some_and(|stem| !dir.join(format!("{stem}.{IDX_EXT}")).exists());
            if name.starts_with('.') || orphan {
                remove_file(&e.path())?;
            }
        }
        Ok(())
    }

    /// The names (hex SHA-256) of every blob held, loose or packed.
    pub fn names(&self) -> io::Result<HashSet<String>> {
        let mut out: HashSet<String> = self.packed.keys().map(ToString::to_string).collect();
        let list = match fs::read_dir(self.loose_dir()) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in list {
            let name = e?.file_name();
            if let Some(n) = name.to_str()
                && !n.starts_with('.')
            {
                out.insert(n.to_string());
            }
        }
        Ok(out)
    }

    /// How many blobs the packs hold.
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }

    fn loose_dir(&self) -> PathBuf {
        self.base.join(bundle::BLOB_DIR)
    }

    /// Reads the blob of `entry` into `sink`, checked against its size and hash: from
    /// a pack if one holds it, else loose ([`tenet_keys::read_blob_into`]). The sink
    /// has received unverified bytes when this fails.
    pub fn read_into(&self, entry: &FileEntry, sink: impl Write) -> Result<(), VerifyError> {
        let Some(slot) = self.packed.get(&entry.sha256) else {
            return tenet_keys::read_blob_into(&self.base, entry, sink);
        };
        let reader = PackReader::of(&self.packs[slot.pack], slot);
        tenet_keys::check_blob_stream(entry, reader, sink)
    }

    /// Removes a blob whose stored bytes are not its own: the loose file, or the entry
    /// in its pack's index (the index is rewritten atomically; a pack left with no
    /// entry is removed).
    pub fn forget(&self, sha: &Sha256Sum) -> io::Result<()> {
        let Some(slot) = self.packed.get(sha) else {
            return remove_file(&bundle::blob_path(&self.base, sha));
        };
        let _one_at_a_time = self.forget.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.base.join(PACKS);
        let name = &self.packs[slot.pack].name;
        let idx = dir.join(format!("{name}.{IDX_EXT}"));
        // Read again: another entry of this pack may have been removed since it opened.
        let mut entries = match read_index(&idx) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let before = entries.len();
        entries.retain(|(s, _, _)| s != sha);
        if entries.len() == before {
            return Ok(());
        }
        if entries.is_empty() {
            return remove_pack(&dir, name);
        }
        write_atomic(&idx, &render_index(&entries), 0o600, Overwrite::Replace)
    }

    /// Keeps only the blobs named in `keep`: loose ones not in it are removed, and packs
    /// with none of them. When the packs hold more bytes of other blobs than of kept
    /// ones, or there are more than 32 packs, the kept packed blobs are copied
    /// into one new pack, each checked by its hash on the way, and the old packs
    /// removed once the new one is durable. A kept blob found damaged is left out after
    /// `on_damage` has recorded it (it is fetched again); any I/O failure stops the
    /// copy and leaves every old pack in place.
    pub fn retain(
        &self,
        keep: &HashSet<Sha256Sum>,
        on_damage: impl Fn(&str) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Ok(list) = fs::read_dir(self.loose_dir()) {
            for e in list {
                let e = e?;
                let name = e.file_name();
                let Some(n) = name.to_str().filter(|n| !n.starts_with('.')) else {
                    continue;
                };
                if n.parse::<Sha256Sum>().is_ok_and(|s| !keep.contains(&s)) {
                    remove_file(&e.path())?;
                }
            }
        }
        let (mut live, mut dead) = (0u64, 0u64);
        let mut used = vec![false; self.packs.len()];
        for (pack, used) in self.packs.iter().zip(used.iter_mut()) {
            for (sha, _, size) in &pack.entries {
                if keep.contains(sha) {
                    live = live.saturating_add(*size);
                    *used = true;
                } else {
                    dead = dead.saturating_add(*size);
                }
            }
        }
        let dir = self.base.join(PACKS);
        if dead <= live && self.packs.len() <= MAX_PACKS {
            for (pack, used) in self.packs.iter().zip(&used) {
                if !used {
                    remove_pack(&dir, &pack.name)?;
                }
            }
            return Ok(());
        }
        let mut kept: Vec<(&Sha256Sum, &Slot)> = self
            .packed
            .iter()
            .filter(|(sha, _)| keep.contains(*sha))
            .collect();
        kept.sort_by_key(|(_, slot)| (slot.pack, slot.offset));
        let mut writer = PackWriter::create(&self.base)?;
        let mut damaged = Vec::new();
        for (sha, slot) in kept {
            let pack = &self.packs[slot.pack];
            let entry = FileEntry {
                path: format!("{PACKS}/{}.{PACK_EXT}", pack.name),
                sha256: *sha,
                size: slot.size,
            };
            match writer.add(&entry, PackReader::of(pack, slot)) {
                Ok(()) => {}
                Err(
                    e @ (VerifyError::BlobHash { .. }
                    | VerifyError::BlobTooSmall { .. }
                    | VerifyError::BlobTooLarge { .. }),
                ) => damaged.push(format!("blob {sha}: {}", tenet_keys::error_chain(&e))),
                // The old packs stay; the new one is dropped with the writer.
                Err(e) => return Err(io::Error::other(tenet_keys::error_chain(&e))),
            }
        }
        for what in &damaged {
            on_damage(what)?;
        }
        let new = writer.finish()?;
        for pack in &self.packs {
            if new.as_deref() != Some(pack.name.as_str()) {
                remove_pack(&dir, &pack.name)?;
            }
        }
        Ok(())
    }
}

/// One packed blob's bytes, read with `pread` (the pack's file is shared by threads).
struct PackReader<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl<'a> PackReader<'a> {
    fn of(pack: &'a Pack, slot: &Slot) -> PackReader<'a> {
        PackReader {
            file: &pack.file,
            at: slot.offset,
            end: slot.offset.saturating_add(slot.size),
        }
    }
}

impl Read for PackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.at)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A pack being written: blobs are appended as they stream in, each checked against
/// its entry first; [`PackWriter::finish`] makes the checked ones visible.
pub struct PackWriter {
    dir: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    entries: Vec<(Sha256Sum, u64, u64)>,
    seen: HashSet<Sha256Sum>,
    len: u64,
    /// A failed blob could not be taken out again: the offsets no longer hold, and
    /// nothing of this pack may be kept.
    broken: bool,
}

impl PackWriter {
    /// A new pack in the store under `base`.
    pub fn create(base: &Path) -> io::Result<PackWriter> {
        let dir = base.join(PACKS);
        fs::create_dir_all(&dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .suffix(".pack")
            .tempfile_in(&dir)?;
        Ok(PackWriter {
            dir,
            file: BufWriter::with_capacity(256 * 1024, tmp),
            entries: Vec::new(),
            seen: HashSet::new(),
            len: 0,
            broken: false,
        })
    }

    /// How many blobs are in so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob is in yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the blob of `entry` from `reader`, checked against its size and hash.
    /// A blob that fails leaves no byte in the pack; those before it stay.
    pub fn add(&mut self, entry: &FileEntry, reader: impl Read) -> Result<(), VerifyError> {
        if self.broken {
            return Err(VerifyError::BlobIo {
                path: entry.path.clone(),
                source: io::Error::other("an earlier write to the pack failed"),
            });
        }
        if self.seen.contains(&entry.sha256) {
            // Held already; still read and checked, so a stream of several blobs
            // stays in step.
            return tenet_keys::check_blob_stream(entry, reader, io::sink());
        }
        if let Err(e) = tenet_keys::check_blob_stream(entry, reader, &mut self.file) {
            let undo = self.file.flush().and_then(|()| {
                let f = self.file.get_mut();
                f.as_file().set_len(self.len)?;
                f.seek(SeekFrom::Start(self.len)).map(drop)
            });
            if let Err(io) = undo {
                self.broken = true;
                return Err(VerifyError::BlobIo {
                    path: entry.path.clone(),
                    source: io,
                });
            }
            return Err(e);
        }
        self.entries.push((entry.sha256, self.len, entry.size));
        self.seen.insert(entry.sha256);
        self.len = self.len.saturating_add(entry.size);
        Ok(())
    }

    /// Flushes the pack and its index to disk and puts them in place, pack first:
    /// the index makes the pack visible. Returns the pack's name, or `None` (and no
    /// file) when no blob was added.
    pub fn finish(mut self) -> io::Result<Option<String>> {
        if self.broken {
            return Err(io::Error::other(
                "a write to the pack failed and could not be undone; the pack was dropped",
            ));
        }
        if self.entries.is_empty() {
            return Ok(None);
        }
        self.entries
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let index = render_index(&self.entries);
        let name = Sha256Sum::of(&index).to_string();
        let file = self
            .file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.as_file().sync_all()?;
        file.persist(self.dir.join(format!("{name}.{PACK_EXT}")))
            .map_err(|e| e.error)?;
        // The pack's name is durable before an index can name it.
        File::open(&self.dir)?.sync_all()?;
        write_atomic(
            &self.dir.join(format!("{name}.{IDX_EXT}")),
            &index,
            0o600,
            Overwrite::Replace,
        )?;
        Ok(Some(name))
    }
}

/// Opens a file of the store for reading: never through a symlink, never waiting on a
/// FIFO, and only a regular file (anything else is `InvalidData`: damage).
fn open_regular(path: &Path) -> io::Result<File> {
    let file = tenet_keys::fsio::open_read_no_follow(path).map_err(|e| {
        if tenet_keys::fsio::is_symlink_refusal(&e) {
            io::Error::new(io::ErrorKind::InvalidData, "a symlink, not a file")
        } else {
            e
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads and parses an index, at most [`MAX_INDEX_BYTES`] of it.
fn read_index(path: &Path) -> io::Result<Vec<(Sha256Sum, u64, u64)>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "pack index: larger than any index",
        ));
    }
    parse_index(&bytes)
}

fn render_index(entries: &[(Sha256Sum, u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + entries.len() * ENTRY_LEN + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (sha, offset, size) in entries {
        out.extend_from_slice(sha.as_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
    }
    let sum = Sha256Sum::of(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn parse_index(bytes: &[u8]) -> io::Result<Vec<(Sha256Sum, u64, u64)>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("pack index: {why}"));
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or_else(|| bad("too short"))?;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256Sum::of(body).as_bytes().as_slice() != sum {
        return Err(bad("checksum mismatch"));
    }
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not an index"))?;
    let (count, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("too short"))?;
    let count = usize::try_from(u64::from_le_bytes(*count)).map_err(|_| bad("bad count"))?;
    if count.checked_mul(ENTRY_LEN) != Some(rest.len()) {
        return Err(bad("entry count does not match its length"));
    }
    Ok(rest
        .chunks_exact(ENTRY_LEN)
        .map(|c| {
            let (sha, c) = c.split_at(32);
            let (offset, size) = c.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            (
                Sha256Sum::from_bytes(sha.try_into().unwrap_or([0; 32])),
                word(offset),
                word(size),
            )
        })
        .collect())
}

/// Removes a pack: its index first (which makes it invisible), then the pack.
fn remove_pack(dir: &Path, name: &str) -> io::Result<()> {
    remove_file(&dir.join(format!("{name}.{IDX_EXT}")))?;
    remove_file(&dir.join(format!("{name}.{PACK_EXT}")))
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: &[u8]) -> FileEntry {
        FileEntry {
            path: "x".into(),
            sha256: Sha256Sum::of(bytes),
            size: bytes.len() as u64,
        }
    }

    fn undamaged(what: &str) -> io::Result<()> {
        panic!("unexpected damage: {what}")
    }

    fn read(store: &Store, e: &FileEntry) -> Result<Vec<u8>, VerifyError> {
        let mut out = Vec::new();
        store.read_into(e, &mut out).map(|()| out)
    }

    fn pack_of(base: &Path, blobs: &[&[u8]]) -> String {
        let mut w = PackWriter::create(base).expect("create");
        for b in blobs {
            w.add(&entry(b), *b).expect("add");
        }
        w.finish().expect("finish").expect("a pack")
    }

    #[test]
    fn packed_blobs_read_back_checked_and_a_failed_add_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = PackWriter::create(dir.path()).expect("create");
        w.add(&entry(b"one"), &b"one"[..]).expect("one");
        // Bytes that are not the declared blob: refused, and not in the pack.
        let err = w.add(&entry(b"two"), &b"TWO"[..]).expect_err("wrong bytes");
        assert!(matches!(err, VerifyError::BlobHash { .. }), "{err:?}");
        w.add(&entry(b"three"), &b"three"[..]).expect("three");
        assert_eq!(w.len(), 2);
        let name = w.finish().expect("finish").expect("a pack");
        let pack = fs::read(dir.path().join(PACKS).join(format!("{name}.pack"))).expect("pack");
        assert_eq!(pack, b"onethree");

        let store = Store::open(dir.path(), undamaged).expect("open");
        assert_eq!(read(&store, &entry(b"one")).expect("one"), b"one");
        assert_eq!(read(&store, &entry(b"three")).expect("three"), b"three");
        let missing = read(&store, &entry(b"two")).expect_err("two was refused");
        assert!(
            matches!(missing, VerifyError::MissingBlob { .. }),
            "{missing:?}"
        );
        let names = store.names().expect("names");
        assert!(names.contains(&Sha256Sum::of(b"one").to_string()));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn a_damaged_packed_blob_is_refused_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = pack_of(dir.path(), &[b"alpha", b"beta"]);
        let path = dir.path().join(PACKS).join(format!("{name}.pack"));
        // Same length, other bytes: only the hash can tell.
        crate::test_util::write(&path, "alphaBETA");
        let store = Store::open(dir.path(), undamaged).expect("open");
        let err = read(&store, &entry(b"beta")).expect_err("damaged");
        assert!(matches!(err, VerifyError::BlobHash { .. }), "{err:?}");
        store.forget(&Sha256Sum::of(b"beta")).expect("forget");

        let store = Store::open(dir.path(), undamaged).expect("reopen");
        assert_eq!(read(&store, &entry(b"alpha")).expect("alpha"), b"alpha");
        assert!(matches!(
            read(&store, &entry(b"beta")),
            Err(VerifyError::MissingBlob { .. })
        ));
        // The last entry forgotten: the pack goes.
        store.forget(&Sha256Sum::of(b"alpha")).expect("forget");
        assert!(!path.exists());
    }

    #[test]
    fn a_damaged_index_removes_its_pack_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = pack_of(dir.path(), &[b"alpha"]);
        let idx = dir.path().join(PACKS).join(format!("{name}.idx"));
        let mut bytes = fs::read(&idx).expect("idx");
        bytes[20] ^= 1;
        crate::test_util::write_bytes(&idx, &bytes);
        let told = std::cell::RefCell::new(Vec::new());
        let store = Store::open(dir.path(), |d| {
            told.borrow_mut().push(d.to_string());
            Ok(())
        })
        .expect("open");
        assert_eq!(told.borrow().len(), 1, "{told:?}");
        assert!(told.borrow()[0].contains("checksum"), "{told:?}");
        assert_eq!(store.packed_len(), 0);
        assert!(!idx.exists());
        assert!(!dir.path().join(PACKS).join(format!("{name}.pack")).exists());
    }

    #[test]
    fn retain_drops_dead_packs_and_repacks_mostly_dead_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = pack_of(dir.path(), &[b"a-live", b"a-dead-and-long"]);
        let second = pack_of(dir.path(), &[b"b-dead"]);
        let loose = dir.path().join(bundle::BLOB_DIR);
        fs::create_dir_all(&loose).expect("loose dir");
        crate::test_util::write(&loose.join(Sha256Sum::of(b"l-live").to_string()), "l-live");
        crate::test_util::write(&loose.join(Sha256Sum::of(b"l-dead").to_string()), "l-dead");
        let keep: HashSet<Sha256Sum> = [b"a-live".as_slice(), b"l-live"]
            .iter()
            .map(|b| Sha256Sum::of(b))
            .collect();

        let store = Store::open(dir.path(), undamaged).expect("open");
        store.retain(&keep, undamaged).expect("retain");
        let store = Store::open(dir.path(), undamaged).expect("reopen");
        let mut names: Vec<String> = store.names().expect("names").into_iter().collect();
        names.sort();
        let mut want: Vec<String> = keep.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(read(&store, &entry(b"a-live")).expect("a-live"), b"a-live");
        let packs = dir.path().join(PACKS);
        for old in [&first, &second] {
            assert!(!packs.join(format!("{old}.pack")).exists(), "{old} removed");
        }
        assert_eq!(store.packed_len(), 1);
    }

    fn keep_of(blobs: &[&[u8]]) -> HashSet<Sha256Sum> {
        blobs.iter().map(|b| Sha256Sum::of(b)).collect()
    }

    fn pack_names(base: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(base.join(PACKS))
            .expect("packs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pack"))
            .collect();
        names.sort();
        names
    }

    /// Mostly live packs are left as they are; only a pack with no kept blob goes.
    #[test]
    fn retain_keeps_mostly_live_packs_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mixed = pack_of(dir.path(), &[b"live-and-long", b"dead"]);
        let gone = pack_of(dir.path(), &[b"old"]);
        let store = Store::open(dir.path(), undamaged).expect("open");
        store
            .retain(&keep_of(&[b"live-and-long"]), undamaged)
            .expect("retain");
        assert_eq!(pack_names(dir.path()), [format!("{mixed}.pack")]);
        assert!(!dir.path().join(PACKS).join(format!("{gone}.idx")).exists());
    }

    /// A kept blob found damaged while repacking is left out once recorded; the others
    /// are carried into the new pack and the old packs go.
    #[test]
    fn a_damaged_blob_is_left_out_of_a_repack_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = pack_of(dir.path(), &[b"good", b"bad!", b"dead-and-much-longer"]);
        let path = dir.path().join(PACKS).join(format!("{old}.pack"));
        crate::test_util::write(&path, "goodBAD!dead-and-much-longer");
        let told = std::cell::RefCell::new(Vec::new());
        let store = Store::open(dir.path(), undamaged).expect("open");
        store
            .retain(&keep_of(&[b"good", b"bad!"]), |what| {
                told.borrow_mut().push(what.to_string());
                Ok(())
            })
            .expect("retain");
        assert_eq!(told.borrow().len(), 1, "{told:?}");
        assert!(
            told.borrow()[0].contains(&Sha256Sum::of(b"bad!").to_string()),
            "{told:?}"
        );
        let store = Store::open(dir.path(), undamaged).expect("reopen");
        assert_eq!(read(&store, &entry(b"good")).expect("good"), b"good");
        assert!(matches!(
            read(&store, &entry(b"bad!")),
            Err(VerifyError::MissingBlob { .. })
        ));
        assert!(!path.exists());
        // A damage that cannot be recorded stops the repack: nothing is removed.
        let again = pack_of(dir.path(), &[b"more", b"dead-and-even-much-longer"]);
        let store = Store::open(dir.path(), undamaged).expect("reopen");
        let before = pack_names(dir.path());
        let path = dir.path().join(PACKS).join(format!("{again}.pack"));
        crate::test_util::write(&path, "MOREdead-and-even-much-longer");
        let refused = store.retain(&keep_of(&[b"good", b"more"]), |_| {
            Err(io::Error::other("cannot record"))
        });
        assert!(refused.is_err());
        assert_eq!(pack_names(dir.path()), before);
    }

    /// Too many packs are merged into one, even when all their blobs are live.
    #[test]
    fn more_than_max_packs_are_merged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs: Vec<Vec<u8>> = (0..=MAX_PACKS)
            .map(|i| format!("blob {i}").into_bytes())
            .collect();
        for b in &blobs {
            pack_of(dir.path(), &[b]);
        }
        let all: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let store = Store::open(dir.path(), undamaged).expect("open");
        store.retain(&keep_of(&all), undamaged).expect("retain");
        assert_eq!(pack_names(dir.path()).len(), 1);
        let store = Store::open(dir.path(), undamaged).expect("reopen");
        for b in &all {
            assert_eq!(read(&store, &entry(b)).expect("read"), *b);
        }
    }

    /// An index that is a symlink or a directory is damage, never followed; a pack
    /// that cannot be removed is ignored rather than failing the store.
    #[test]
    fn an_index_that_is_not_a_file_is_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let linked = pack_of(dir.path(), &[b"linked"]);
        let packs = dir.path().join(PACKS);
        let idx = packs.join(format!("{linked}.idx"));
        let bytes = fs::read(&idx).expect("index");
        crate::test_util::write_bytes(&packs.join("elsewhere"), &bytes);
        remove_file(&idx).expect("remove the index");
        crate::test_util::symlink("elsewhere", &idx);
        fs::create_dir(packs.join("adir.idx")).expect("a directory index");
        let told = std::cell::RefCell::new(Vec::new());
        let store = Store::open(dir.path(), |d| {
            told.borrow_mut().push(d.to_string());
            Ok(())
        })
        .expect("open");
        assert_eq!(store.packed_len(), 0);
        assert_eq!(told.borrow().len(), 2, "{told:?}");
        assert!(
            fs::symlink_metadata(&idx).is_err(),
            "the symlink is removed"
        );
        assert!(packs.join("elsewhere").exists(), "its target is untouched");
    }

    #[test]
    fn clean_removes_temporaries_and_packs_without_an_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = pack_of(dir.path(), &[b"kept"]);
        let packs = dir.path().join(PACKS);
        crate::test_util::write(&packs.join(".incoming-x.pack"), "half");
        crate::test_util::write(&packs.join("orphan.pack"), "no index");
        Store::clean(dir.path()).expect("clean");
        let mut left: Vec<String> = fs::read_dir(&packs)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [format!("{name}.idx"), format!("{name}.pack")]);
    }
}
