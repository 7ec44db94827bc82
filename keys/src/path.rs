//! The rule for file paths inside a manifest: relative, normalised, plain.
//!
//! A manifest path names a file of the policy tree; the agent later writes it beneath a
//! staging directory, so a path that could climb out, alias another, or be read
//! differently on another system is refused here, with the reason.

use crate::error::PathProblem;

/// Longest manifest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Checks one manifest path: not empty, relative, no `.` or `..` or empty component, no
/// NUL, backslash or other control character, at most [`MAX_PATH_BYTES`].
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong {
            max: MAX_PATH_BYTES,
        });
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.chars().any(char::is_control) {
        return Err(PathProblem::Control);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathProblem::EmptyComponent),
            "." => return Err(PathProblem::CurDir),
            ".." => return Err(PathProblem::ParentDir),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(path: &str, expected: Result<(), PathProblem>) {
        assert_eq!(check_path(path), expected, "{path:?}");
    }

    #[test]
    fn table() {
        check("cluster.toml", Ok(()));
        check("files/motd-dce", Ok(()));
        check("a/b.c/..d/e..", Ok(()));
        check("", Err(PathProblem::Empty));
        check("/etc/passwd", Err(PathProblem::Absolute));
        check("../x", Err(PathProblem::ParentDir));
        check("a/../../x", Err(PathProblem::ParentDir));
        check("a/./b", Err(PathProblem::CurDir));
        check("a//b", Err(PathProblem::EmptyComponent));
        check("a/", Err(PathProblem::EmptyComponent));
        check("a\0b", Err(PathProblem::Nul));
        check("a\\..\\b", Err(PathProblem::Backslash));
        check("a\nb", Err(PathProblem::Control));
        check(
            &"a".repeat(MAX_PATH_BYTES + 1),
            Err(PathProblem::TooLong {
                max: MAX_PATH_BYTES,
            }),
        );
    }

    proptest! {
        #[test]
        fn accepted_paths_stay_beneath_the_root(path in "[a-z./\\\\]{0,12}") {
            if check_path(&path).is_ok() {
                let p = std::path::Path::new(&path);
                prop_assert!(p.is_relative());
                prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }
    }
}
