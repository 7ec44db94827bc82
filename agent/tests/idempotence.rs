//! Idempotence over arbitrary starting trees: for `file`, `link`, `dir`, `absent`,
//! `copy` and `tree` promises over whatever a path holds at first (nothing, a file, a
//! directory, a link in or out of the root, a loop), after one apply a dry run
//! finds every kept or repaired promise kept (and a blocked or failed one the same
//! as before), and a second apply changes no byte, mode, link target or inode.
//!
//! Each promise owns its own slot `/t/sK`, so promises never interact and every
//! difference between runs is the agent's. Runs go through the binary (`--json`,
//! state directory outside the root).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::util::{Report, Sandbox, listing, mkdir, symlink, temp_files, write, write_mode};

/// The engine observes and applies a phase on several threads from this many
/// promises on (`PARALLEL_MIN` in `converge.rs`).
const PARALLEL_MIN: usize = 256;

/// What a slot holds before the first run.
#[derive(Debug, Clone)]
enum Start {
    Missing,
    File {
        content: Vec<u8>,
        mode: u32,
    },
    /// A directory with files `cN` (and `.h` when `hidden`).
    Dir {
        files: Vec<Vec<u8>>,
        hidden: bool,
        mode: u32,
    },
    Link(StartLink),
}

/// Where a starting link at slot K points.
#[derive(Debug, Clone, Copy)]
enum StartLink {
    /// `../uK`, a directory inside the root no promise names.
    Inside,
    /// `ROOT/uK` written as an absolute host path (inside the root).
    InsideAbsolute,
    /// `../nowhereK`.
    Dangling,
    /// A directory outside the root.
    Outside,
    /// Itself.
    Loop,
}

/// The promise about slot K.
#[derive(Debug, Clone)]
enum Spec {
    File {
        /// `/t/sK/n/f` instead of `/t/sK`.
        nested: bool,
        content: Content,
        mode: Option<u32>,
    },
    Link {
        target: LinkTo,
        force: bool,
    },
    Dir {
        nested: bool,
        mode: Option<u32>,
    },
    Absent {
        /// `/t/sK/*` instead of `/t/sK`.
        glob: bool,
        recursive: bool,
    },
    Copy {
        source: Source,
        purge: bool,
    },
    /// `[[tree]]` from `files/tK`: files `cN` (in `d/` when the flag says), at least one.
    Tree {
        files: Vec<(Vec<u8>, bool)>,
        purge: bool,
        mode: Option<u32>,
        dir_mode: Option<u32>,
    },
}

#[derive(Debug, Clone)]
enum Content {
    /// `content = "..."`.
    Text(String),
    /// `source = "sK"`, any bytes.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
enum LinkTo {
    /// `/t/tgtK` (re-rooted by the agent).
    Absolute,
    /// `tgtK`.
    Relative,
    /// `../uK/x`.
    Up,
}

/// What `/src/sK` holds for a copy.
#[derive(Debug, Clone)]
enum Source {
    Missing,
    File {
        content: Vec<u8>,
        mode: u32,
    },
    /// Files `cN` with modes; `sub` adds `sub/c0`, `link` adds `l -> c0`.
    Dir {
        files: Vec<(Vec<u8>, u32)>,
        sub: bool,
        link: bool,
    },
}

#[derive(Debug, Clone)]
struct Case {
    slots: Vec<(Start, Spec)>,
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..48),
        "[a-z \n]{0,40}".prop_map(String::into_bytes),
    ]
}

fn file_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o600, 0o640, 0o644, 0o664, 0o700, 0o755, 0o444])
}

fn dir_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o700, 0o750, 0o755, 0o775, 0o555])
}

fn start() -> impl Strategy<Value = Start> {
    prop_oneof![
        Just(Start::Missing),
        (bytes(), file_mode()).prop_map(|(content, mode)| Start::File { content, mode }),
        (
            proptest::collection::vec(bytes(), 0..3),
            any::<bool>(),
            dir_mode()
        )
            .prop_map(|(files, hidden, mode)| Start::Dir {
                files,
                hidden,
                mode
            }),
        prop::sample::select(vec![
            StartLink::Inside,
            StartLink::InsideAbsolute,
            StartLink::Dangling,
            StartLink::Outside,
            StartLink::Loop,
        ])
        .prop_map(Start::Link),
    ]
}

/// Promise kinds, by the phase the engine runs them in.
#[derive(Debug, Clone, Copy)]
enum Kind {
    File,
    Link,
    Dir,
    Absent,
    Copy,
    Tree,
}

const KINDS: [Kind; 6] = [
    Kind::File,
    Kind::Link,
    Kind::Dir,
    Kind::Absent,
    Kind::Copy,
    Kind::Tree,
];

fn spec_of(kind: Kind) -> BoxedStrategy<Spec> {
    match kind {
        Kind::File => {
            let content = prop_oneof![
                "\\PC{0,30}".prop_map(Content::Text),
                "[a-z\n\"\\\\$\\{\\}\t]{0,30}".prop_map(Content::Text),
                bytes().prop_map(Content::Bytes),
            ];
            (any::<bool>(), content, proptest::option::of(file_mode()))
                .prop_map(|(nested, content, mode)| Spec::File {
                    nested,
                    content,
                    mode,
                })
                .boxed()
        }
        Kind::Link => (
            prop::sample::select(vec![LinkTo::Absolute, LinkTo::Relative, LinkTo::Up]),
            any::<bool>(),
        )
            .prop_map(|(target, force)| Spec::Link { target, force })
            .boxed(),
        Kind::Dir => (any::<bool>(), proptest::option::of(dir_mode()))
            .prop_map(|(nested, mode)| Spec::Dir { nested, mode })
            .boxed(),
        Kind::Absent => (any::<bool>(), any::<bool>())
            .prop_map(|(glob, recursive)| Spec::Absent { glob, recursive })
            .boxed(),
        Kind::Copy => {
            let source = prop_oneof![
                Just(Source::Missing),
                (bytes(), file_mode()).prop_map(|(content, mode)| Source::File { content, mode }),
                (
                    proptest::collection::vec((bytes(), file_mode()), 0..3),
                    any::<bool>(),
                    any::<bool>()
                )
                    .prop_map(|(files, sub, link)| Source::Dir {
                        files,
                        sub,
                        link
                    }),
            ];
            (source, any::<bool>())
                .prop_map(|(source, purge)| Spec::Copy { source, purge })
                .boxed()
        }
        Kind::Tree => (
            proptest::collection::vec((bytes(), any::<bool>()), 1..4),
            any::<bool>(),
            proptest::option::of(file_mode()),
            proptest::option::of(dir_mode()),
        )
            .prop_map(|(files, purge, mode, dir_mode)| Spec::Tree {
                files,
                purge,
                mode,
                dir_mode,
            })
            .boxed(),
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    prop::sample::select(KINDS.to_vec()).prop_flat_map(spec_of)
}

fn case(slots: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    proptest::collection::vec((start(), spec()), slots).prop_map(|slots| Case { slots })
}

/// `per_kind` promises of every kind, so each batched phase holds that many.
fn large_case(per_kind: usize) -> impl Strategy<Value = Case> {
    KINDS
        .map(|k| proptest::collection::vec((start(), spec_of(k)), per_kind))
        .prop_map(|kinds| Case {
            slots: kinds.into_iter().flatten().collect(),
        })
}

/// A TOML basic string holding `s` exactly.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes the starting tree and the policy of `case` into `sb`.
fn build(sb: &Sandbox, case: &Case) {
    let mut policy = String::new();
    for (k, (start, spec)) in case.slots.iter().enumerate() {
        mkdir(&sb.at(&format!("/u{k}")));
        write(&sb.at(&format!("/u{k}/x")), b"elsewhere\n");
        let slot = sb.at(&format!("/t/s{k}"));
        match start {
            Start::Missing => mkdir(&sb.at("/t")),
            Start::File { content, mode } => write_mode(&slot, content, *mode),
            Start::Dir {
                files,
                hidden,
                mode,
            } => {
                mkdir(&slot);
                for (n, f) in files.iter().enumerate() {
                    write(&slot.join(format!("c{n}")), f);
                }
                if *hidden {
                    write(&slot.join(".h"), b"hidden\n");
                }
                crate::util::set_mode(&slot, *mode);
            }
            Start::Link(l) => match l {
                StartLink::Inside => symlink(format!("../u{k}"), &slot),
                StartLink::InsideAbsolute => symlink(sb.at(&format!("/u{k}")), &slot),
                StartLink::Dangling => symlink(format!("../nowhere{k}"), &slot),
                StartLink::Outside => symlink(&sb.outside, &slot),
                StartLink::Loop => symlink(format!("s{k}"), &slot),
            },
        }
        let p = format!("/t/s{k}");
        match spec {
            Spec::File {
                nested,
                content,
                mode,
            } => {
                let path = if *nested { format!("{p}/n/f") } else { p };
                let _ = writeln!(policy, "[[file]]\npath = {}", toml_string(&path));
                match content {
                    Content::Text(t) => {
                        let _ = writeln!(policy, "content = {}", toml_string(t));
                    }
                    Content::Bytes(b) => {
                        write(&sb.policy.join(format!("files/s{k}")), b);
                        let _ = writeln!(policy, "source = \"s{k}\"");
                    }
                }
                if let Some(m) = mode {
                    let _ = writeln!(policy, "mode = \"{m:04o}\"");
                }
            }
            Spec::Link { target, force } => {
                let target = match target {
                    LinkTo::Absolute => format!("/t/tgt{k}"),
                    LinkTo::Relative => format!("tgt{k}"),
                    LinkTo::Up => format!("../u{k}/x"),
                };
                let _ = writeln!(
                    policy,
                    "[[link]]\npath = \"{p}\"\ntarget = \"{target}\"\nforce = {force}"
                );
            }
            Spec::Dir { nested, mode } => {
                let path = if *nested { format!("{p}/n/m") } else { p };
                let _ = writeln!(policy, "[[dir]]\npath = \"{path}\"");
                if let Some(m) = mode {
                    let _ = writeln!(policy, "mode = \"{m:04o}\"");
                }
            }
            Spec::Absent { glob, recursive } => {
                let path = if *glob { format!("{p}/*") } else { p };
                let _ = writeln!(
                    policy,
                    "[[absent]]\npaths = [\"{path}\"]\nrecursive = {recursive}"
                );
            }
            Spec::Copy { source, purge } => {
                let src = sb.at(&format!("/src/s{k}"));
                match source {
                    Source::Missing => mkdir(&sb.at("/src")),
                    Source::File { content, mode } => write_mode(&src, content, *mode),
                    Source::Dir { files, sub, link } => {
                        mkdir(&src);
                        for (n, (f, mode)) in files.iter().enumerate() {
                            write_mode(&src.join(format!("c{n}")), f, *mode);
                        }
                        if *sub {
                            write(&src.join("sub/c0"), b"deeper\n");
                        }
                        if *link {
                            symlink("c0", &src.join("l"));
                        }
                    }
                }
                let _ = writeln!(
                    policy,
                    "[[copy]]\nfrom = \"/src/s{k}\"\nto = \"{p}\"\npurge = {purge}"
                );
            }
            Spec::Tree {
                files,
                purge,
                mode,
                dir_mode,
            } => {
                for (n, (f, deeper)) in files.iter().enumerate() {
                    let at = if *deeper {
                        format!("files/t{k}/d/c{n}")
                    } else {
                        format!("files/t{k}/c{n}")
                    };
                    write(&sb.policy.join(at), f);
                }
                let _ = writeln!(
                    policy,
                    "[[tree]]\npath = \"{p}\"\nsource = \"t{k}\"\npurge = {purge}"
                );
                if let Some(m) = mode {
                    let _ = writeln!(policy, "mode = \"{m:04o}\"");
                }
                if let Some(m) = dir_mode {
                    let _ = writeln!(policy, "dir_mode = \"{m:04o}\"");
                }
            }
        }
        policy.push('\n');
    }
    sb.policy(&[("p.toml", &policy)]);
}

/// Each promise's status in a run.
fn statuses(r: &Report) -> BTreeMap<String, String> {
    r.statuses().into_iter().collect()
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let sb = Sandbox::new();
    build(&sb, case);
    let policy =
        std::fs::read_to_string(sb.policy.join("p.toml")).expect("the policy just written");
    let valid = sb.check();
    prop_assert_eq!(
        valid.code,
        0,
        "the generated policy is invalid:\n{}{}",
        policy,
        valid.stdout
    );
    let outside = listing(&sb.outside);

    let first = sb.apply_outside_state(&["--json"]);
    let once = first.report();
    prop_assert!(first.code == 0 || first.code == 1, "{:?}", first);
    let once_status = statuses(&once);
    for (id, s) in &once_status {
        prop_assert!(
            s != "did_not_converge",
            "{} did not converge:\n{}",
            id,
            first.stdout
        );
    }
    let after_once = listing(&sb.root);
    prop_assert!(
        temp_files(&sb.root).is_empty(),
        "temp files left: {:?}",
        temp_files(&sb.root)
    );

    let dry = sb.apply_outside_state(&["--json", "--dry-run"]).report();
    let dry_status = statuses(&dry);
    prop_assert_eq!(
        dry_status.keys().collect::<Vec<_>>(),
        once_status.keys().collect::<Vec<_>>(),
        "the dry run reported other promises than the apply"
    );
    for (id, s) in dry_status {
        let before = once_status
            .get(&id)
            .map(String::as_str)
            .unwrap_or("missing");
        let want = match before {
            "kept" | "repaired" => "kept",
            other => other,
        };
        prop_assert_eq!(
            s.as_str(),
            want,
            "{} was {} on the first apply; the dry run after it says {}:\n{}",
            &id,
            before,
            &s,
            dry.event(&id)
        );
    }
    prop_assert_eq!(
        listing(&sb.root),
        after_once.clone(),
        "the dry run changed the root"
    );

    let second = sb.apply_outside_state(&["--json"]);
    let twice = second.report();
    prop_assert_eq!(
        twice.count("repaired"),
        0,
        "the second apply repaired:\n{}",
        second.stdout
    );
    prop_assert_eq!(second.code, first.code);
    prop_assert_eq!(
        listing(&sb.root),
        after_once,
        "applying twice left a different tree than applying once"
    );
    prop_assert_eq!(
        listing(&sb.outside),
        outside,
        "a run changed a directory outside the root"
    );
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn apply_then_everything_is_kept_and_a_second_apply_changes_nothing(case in case(1..6)) {
        check(&case)?;
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 2,
        failure_persistence: None,
        ..Config::default()
    })]

    /// Enough promises per phase that the engine observes, applies and verifies
    /// them on several threads.
    #[test]
    fn large_runs_are_idempotent_too(case in large_case(PARALLEL_MIN)) {
        check(&case)?;
    }
}
