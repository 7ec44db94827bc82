//! The stat cache (`STATE/stat-cache`): a run takes the content hash of a file whose
//! `lstat` is unchanged from the cache instead of reading it, never misses a change
//! made through the file system, and `--rehash` reads every file regardless.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tenet_keys::Sha256Sum;

use crate::util::{self, Sandbox};

const POLICY: &str = "[[file]]\npath = \"/etc/a\"\ncontent = \"one\\n\"\n";

/// A stat cache in `state` saying that the file at `path`, as it is now, holds bytes
/// hashing to `sha256`: what the agent records after reading a settled file.
fn cache_entry(state: &Path, path: &Path, sha256: Sha256Sum) {
    let m = fs::symlink_metadata(path).expect("stat");
    let mut body = format!(
        "{sha256} {} {} {} {} {} {} {} {} {} {} ",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.mode(),
        m.uid(),
        m.gid()
    )
    .into_bytes();
    body.extend_from_slice(path.as_os_str().as_bytes());
    body.push(b'\n');
    let mut file = format!("tenet-stat-cache 1 {}\n", Sha256Sum::of(&body)).into_bytes();
    file.extend_from_slice(&body);
    util::write(&state.join("stat-cache"), &file);
}

fn status(sb: &Sandbox, extra: &[&str]) -> String {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let run = sb.apply_outside_state(&args);
    run.expect_code(0);
    let statuses = run.report().statuses();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    statuses[0].1.clone()
}

#[test]
fn an_unchanged_stat_spares_the_read_a_changed_file_is_always_read() {
    let sb = Sandbox::new();
    sb.policy(&[("a.toml", POLICY)]);
    let a = sb.at("/etc/a");
    assert_eq!(status(&sb, &[]), "repaired");

    // Bytes changed behind the file system's back (same inode, size, times, mode and
    // owner as the cache records): the run trusts the cache, the documented
    // assumption, and reads nothing...
    util::write(&a, b"two\n");
    cache_entry(&sb.state, &a, Sha256Sum::of(b"one\n"));
    assert_eq!(status(&sb, &[]), "kept");
    assert_eq!(fs::read(&a).unwrap(), b"two\n");
    // ... and --rehash reads every file, and replaces the cache with what it read
    // (here nothing: the file it rewrote has not settled yet).
    assert_eq!(status(&sb, &["--rehash"]), "repaired");
    assert_eq!(fs::read(&a).unwrap(), b"one\n");
    let cache = fs::read_to_string(sb.state.join("stat-cache")).unwrap();
    assert!(!cache.contains(a.to_str().unwrap()), "{cache}");
    let mode = fs::metadata(sb.state.join("stat-cache"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the cache is owner-only: {mode:o}");

    // A write through the file system changes ctime (and here the inode): the entry
    // no longer matches, so the file is read, and repaired.
    cache_entry(&sb.state, &a, Sha256Sum::of(b"one\n"));
    assert_eq!(status(&sb, &[]), "kept");
    util::write(&a, b"two\n");
    assert_eq!(status(&sb, &[]), "repaired");
    assert_eq!(fs::read(&a).unwrap(), b"one\n");

    // A damaged cache is ignored: every file is read.
    util::write(&a, b"two\n");
    cache_entry(&sb.state, &a, Sha256Sum::of(b"one\n"));
    let cache = sb.state.join("stat-cache");
    let mut bytes = fs::read(&cache).unwrap();
    bytes[20] ^= 1;
    util::write(&cache, &bytes);
    assert_eq!(status(&sb, &[]), "repaired");
    assert_eq!(fs::read(&a).unwrap(), b"one\n");
}
