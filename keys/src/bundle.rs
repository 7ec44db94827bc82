//! The bundle layout, shared by the publisher and the verifier:
//!
//! ```text
//! BUNDLE/
//!   root/1.root.toml  root/1.root.toml.sig  ...   every root version
//!   manifest.toml     manifest.toml.sig
//!   timestamp.toml    timestamp.toml.sig          (written by the online timestamp key)
//!   blobs/sha256/<hex>                            content-addressed files of the tree
//! ```
//!
//! A file's path exists only inside the manifest; the blob store is named by hash, so
//! no path from a document ever becomes a filesystem path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::id::Sha256Sum;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.toml";
/// The timestamp's file name.
pub const TIMESTAMP: &str = "timestamp.toml";
/// The directory of root versions.
pub const ROOT_DIR: &str = "root";
/// The blob store, relative to the bundle.
pub const BLOB_DIR: &str = "blobs/sha256";
/// The suffix of a detached signature file.
pub const SIG_SUFFIX: &str = ".sig";

/// `DIR/root/<version>.root.toml`.
pub fn root_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(ROOT_DIR).join(root_file_name(version))
}

/// `<version>.root.toml`.
pub fn root_file_name(version: u64) -> String {
    format!("{version}.root.toml")
}

/// The version in a `<version>.root.toml` name.
pub fn root_version_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".root.toml")?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// `DIR/blobs/sha256/<hex>`.
pub fn blob_path(dir: &Path, sha256: &Sha256Sum) -> PathBuf {
    dir.join(BLOB_DIR).join(sha256.to_string())
}

/// `X.sig` beside `X`.
pub fn sig_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(SIG_SUFFIX);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            root_path(Path::new("b"), 3),
            PathBuf::from("b/root/3.root.toml")
        );
        assert_eq!(
            sig_path(Path::new("b/manifest.toml")),
            PathBuf::from("b/manifest.toml.sig")
        );
        assert_eq!(root_version_of("12.root.toml"), Some(12));
        for bad in [
            "root.toml",
            ".root.toml",
            "01.root.toml",
            "1.root.toml.sig",
            "x.root.toml",
        ] {
            assert_eq!(root_version_of(bad), None, "{bad}");
        }
    }
}
