//! The blob store: every cached blob by its SHA-256, loose or in a pack.
//!
//! ```text
//! STATE/blobs/
//!   sha256/<hex>            a loose blob (a sync that fetches few blobs writes these)
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
//! one), so that the next sync fetches it again. An index that is itself damaged
//! (its checksum does not match) is removed with its pack, to the same end.
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
}

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
    /// The store under `base`. A pack whose index is unreadable or damaged is removed
    /// (its blobs are then missing, and fetched again); `on_damage` is told of it.
    pub fn open(base: &Path, on_damage: impl Fn(&str)) -> io::Result<Store> {
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
            let parsed = fs::read(&idx).and_then(|b| parse_index(&b));
            let (entries, file) = match parsed.and_then(|e| Ok((e, File::open(&pack)?))) {
                Ok(ok) => ok,
                Err(e) => {
                    on_damage(&format!("{}: {e}", idx.display()));
                    remove_pack(&dir, &name)?;
                    continue;
                }
            };
            let at = store.packs.len();
            store.packs.push(Pack { name, file });
            for (sha, offset, size) in entries {
                store.packed.entry(sha).or_insert(Slot {
                    pack: at,
                    offset,
                    size,
                });
            }
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
        let pack = &self.packs[slot.pack];
        let reader = PackReader {
            file: &pack.file,
            at: slot.offset,
            end: slot.offset.saturating_add(slot.size),
        };
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
        let mut entries = match fs::read(&idx).and_then(|b| parse_index(&b)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        entries.retain(|(s, _, _)| s != sha);
        if entries.is_empty() {
            return remove_pack(&dir, name);
        }
        write_atomic(&idx, &render_index(&entries), 0o600, Overwrite::Replace)
    }

    /// Keeps only the blobs named in `keep`: loose ones not in it are removed, packs
    /// with none of them are removed, and when the packs hold more bytes of other
    /// blobs than of kept ones, the kept packed blobs are copied into one new pack
    /// (each checked by its hash on the way) and the old packs removed.
    pub fn retain(&self, keep: &HashSet<Sha256Sum>) -> io::Result<()> {
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
        let mut live_in = vec![false; self.packs.len()];
        for (sha, slot) in &self.packed {
            if keep.contains(sha) {
                live += slot.size;
                live_in[slot.pack] = true;
            } else {
                dead += slot.size;
            }
        }
        let dir = self.base.join(PACKS);
        if dead <= live {
            for (pack, used) in self.packs.iter().zip(&live_in) {
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
        for (sha, slot) in kept {
            let entry = FileEntry {
                path: format!("{PACKS}/{}", self.packs[slot.pack].name),
                sha256: *sha,
                size: slot.size,
            };
            // A damaged one is left out: it is missing then, and fetched again.
            if let Err(e) = writer.add(&entry, PackReader::of(&self.packs[slot.pack], slot)) {
                tracing::warn!(blob = %sha, error = %tenet_keys::error_chain(&e), "left a damaged blob out of the repacked store");
            }
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
                return Err(VerifyError::BlobIo {
                    path: entry.path.clone(),
                    source: io,
                });
            }
            return Err(e);
        }
        self.entries.push((entry.sha256, self.len, entry.size));
        self.seen.insert(entry.sha256);
        self.len += entry.size;
        Ok(())
    }

    /// Flushes the pack and its index to disk and puts them in place, pack first:
    /// the index makes the pack visible. Returns the pack's name, or `None` (and no
    /// file) when no blob was added.
    pub fn finish(mut self) -> io::Result<Option<String>> {
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
        write_atomic(
            &self.dir.join(format!("{name}.{IDX_EXT}")),
            &index,
            0o600,
            Overwrite::Replace,
        )?;
        Ok(Some(name))
    }
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

        let store = Store::open(dir.path(), |d| panic!("damaged: {d}")).expect("open");
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
        let store = Store::open(dir.path(), |d| panic!("damaged: {d}")).expect("open");
        let err = read(&store, &entry(b"beta")).expect_err("damaged");
        assert!(matches!(err, VerifyError::BlobHash { .. }), "{err:?}");
        store.forget(&Sha256Sum::of(b"beta")).expect("forget");

        let store = Store::open(dir.path(), |d| panic!("damaged: {d}")).expect("reopen");
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
        let store =
            Store::open(dir.path(), |d| told.borrow_mut().push(d.to_string())).expect("open");
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

        let store = Store::open(dir.path(), |d| panic!("damaged: {d}")).expect("open");
        store.retain(&keep).expect("retain");
        let store = Store::open(dir.path(), |d| panic!("damaged: {d}")).expect("reopen");
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
