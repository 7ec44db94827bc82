//! Fixture helpers for tests: build a starting tree directly, bypassing `fsops`.
#![expect(
    clippy::disallowed_methods,
    reason = "fixtures build starting trees, not managed changes"
)]

use std::path::Path;

/// Writes `content` to `path`, creating parents.
pub fn write(path: &Path, content: &str) {
    write_bytes(path, content.as_bytes());
}

/// Writes `content` to `path`, creating parents.
pub fn write_bytes(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("fixture parent directory");
    }
    std::fs::write(path, content).expect("fixture file");
}

/// Makes a symlink at `at` pointing to `target`.
pub fn symlink(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).expect("fixture symlink");
}
