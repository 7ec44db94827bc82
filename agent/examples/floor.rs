//! The I/O floor of the local-convergence benchmark (`bench/`).
//!
//! `floor N ROOT` touches exactly what a no-op run of the benchmark workload
//! has to look at, and nothing more: it opens, stats and reads every managed
//! file, reads every symlink, lstats every path that must be absent, and reads
//! the ten conf files and the environment file. It parses no policy and
//! compares nothing, so its time is the lower bound for any agent that checks
//! the same state from scratch. The names follow `bench/gen.py`.
//!
//! `floor --first N ROOT` is the floor of a first run from the freshly reset
//! sandbox: the bare changes any agent that writes atomically must make. Each
//! file is written to a temp name and renamed into place, each link is made,
//! each absent path unlinked, and each edited file rewritten once through a temp
//! name. No policy, no comparison, no fsync: what is left is the kernel's cost
//! of the changes themselves.
//!
//! Build: `cargo build --release -p tenet-agent --example floor`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Conf files that receive lines, `ROOT/etc/conf{0..9}.txt`.
const CONF_FILES: usize = 10;
/// Managed files per `ROOT/files/dNN` directory.
const FILES_PER_DIR: usize = 100;

fn main() -> io::Result<()> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--first") {
        args.remove(0);
        let (n, root) = parse_args(args.into_iter())?;
        return first(n, &root);
    }
    let (n, root) = parse_args(args.into_iter())?;
    let (files, links, absent) = (n / 2, n / 8, n / 8);
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(4096);

    let w = width(files);
    for i in 0..files {
        let path = root.join(format!("files/d{:02}/f{i:0w$}", i / FILES_PER_DIR));
        let mut file = File::open(&path)?;
        let meta = file.metadata()?;
        buf.clear();
        file.read_to_end(&mut buf)?;
        tally.add_file(buf.len(), meta.len());
    }
    let w = width(links);
    for i in 0..links {
        let target = fs::read_link(root.join(format!("links/l{i:0w$}")))?;
        tally.add_link(&target);
    }
    let w = width(absent);
    for i in 0..absent {
        match fs::symlink_metadata(root.join(format!("junk/j{i:0w$}"))) {
            Ok(_) => tally.present = tally.present.saturating_add(1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for c in 0..CONF_FILES {
        let text = fs::read(root.join(format!("etc/conf{c}.txt")))?;
        tally.add_bytes(text.len());
    }
    let text = fs::read(root.join("etc/environment"))?;
    tally.add_bytes(text.len());

    writeln!(
        io::stdout().lock(),
        "floor N={n}: {} files ({} bytes by stat), {} links, {} absent paths ({} present), {} bytes read",
        tally.files,
        tally.stat_bytes,
        tally.links,
        absent,
        tally.present,
        tally.bytes
    )
}

/// The changes of a first run, made as plainly as the kernel allows.
#[expect(
    clippy::disallowed_methods,
    reason = "the floor makes the bare system calls on purpose; it manages nothing"
)]
fn first(n: usize, root: &Path) -> io::Result<()> {
    let (files, lines, links, absent) = (n / 2, n / 4, n / 8, n / 8);
    let content = [b'x'; 195];
    let w = width(files);
    for i in 0..files {
        let dir = root.join(format!("files/d{:02}", i / FILES_PER_DIR));
        if i % FILES_PER_DIR == 0 {
            fs::create_dir_all(&dir)?;
        }
        let path = dir.join(format!("f{i:0w$}"));
        let tmp = dir.join(format!(".f{i:0w$}.new"));
        let mut f = File::create(&tmp)?;
        f.write_all(&content)?;
        f.write_all(b"\n")?;
        drop(f);
        fs::rename(&tmp, &path)?;
    }
    let w = width(links);
    let fw = width(files);
    for i in 0..links {
        let target = root.join(format!(
            "files/d{:02}/f{:0fw$}",
            (i % files.max(1)) / FILES_PER_DIR,
            i % files.max(1)
        ));
        std::os::unix::fs::symlink(target, root.join(format!("links/l{i:0w$}")))?;
    }
    let w = width(absent);
    for i in 0..absent {
        fs::remove_file(root.join(format!("junk/j{i:0w$}")))?;
    }
    let mut edited: Vec<PathBuf> = (0..CONF_FILES)
        .map(|c| root.join(format!("etc/conf{c}.txt")))
        .collect();
    edited.push(root.join("etc/environment"));
    let per_file = lines / CONF_FILES + 1;
    for path in &edited {
        let mut text = fs::read(path)?;
        for k in 0..per_file {
            writeln!(text, "svc{k:05}  {}/tcp  alias{k:05} # bench", 20000 + k)?;
        }
        let tmp = path.with_extension("new");
        fs::write(&tmp, &text)?;
        fs::rename(&tmp, path)?;
    }
    writeln!(
        io::stdout().lock(),
        "floor --first N={n}: {files} files, {links} links, {absent} removed, {} files edited",
        edited.len()
    )
}

/// What was read; printed so that none of the work can be optimised away.
#[derive(Default)]
struct Tally {
    files: usize,
    bytes: u64,
    stat_bytes: u64,
    links: usize,
    present: usize,
}

impl Tally {
    fn add_file(&mut self, read: usize, len: u64) {
        self.files = self.files.saturating_add(1);
        self.add_bytes(read);
        self.stat_bytes = self.stat_bytes.saturating_add(len);
    }

    fn add_link(&mut self, target: &Path) {
        self.links = self.links.saturating_add(1);
        self.add_bytes(target.as_os_str().len());
    }

    fn add_bytes(&mut self, n: usize) {
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// `N ROOT` from the command line.
fn parse_args(mut args: impl Iterator<Item = OsString>) -> io::Result<(usize, PathBuf)> {
    let usage = || io::Error::new(io::ErrorKind::InvalidInput, "usage: floor N ROOT");
    let (Some(n), Some(root), None) = (args.next(), args.next(), args.next()) else {
        return Err(usage());
    };
    let n = n.to_str().and_then(|s| s.parse().ok()).ok_or_else(usage)?;
    Ok((n, PathBuf::from(root)))
}

/// Digits in the index of a set of `k` items, at least four (as in `gen.py`).
fn width(k: usize) -> usize {
    k.saturating_sub(1).to_string().len().max(4)
}
