//! A run killed with SIGKILL leaves every managed file whole: its old content or
//! its new one, never torn, empty or partial; the next run picks up from there.
//!
//! One large policy (3000 files rewritten, edits to a few more) is applied again
//! and again, each run killed at a different point: first while new content is
//! being staged, then at points spread over the renames, then after the last
//! file. Each run starts from what the killed one left, so together they walk the
//! whole conversion once (which keeps the test to seconds), and each is the
//! recovery run of the kill before it. After every kill each managed file is
//! checked; at the end a normal apply must converge, leave no temp file behind,
//! and a further apply must find everything kept.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{self, Sandbox, temp_files, write, write_mode};

const FILES: usize = 3000;
const DIRS: usize = 30;
const EDITED: usize = 4;
const OLD_MODE: u32 = 0o644;
const NEW_MODE: u32 = 0o640;
/// Kills while new content is being staged, before any rename.
const STAGING_KILLS: usize = 5;
/// Kills spread over the renames.
const RENAME_KILLS: usize = 9;
/// A guard against a hung child, not a timing assertion.
const HANG: Duration = Duration::from_secs(300);

fn path(i: usize) -> String {
    format!("/srv/d{:02}/f{i:04}", i % DIRS)
}

/// 200 bytes.
fn old(i: usize) -> Vec<u8> {
    let mut s = format!("old {i:04} ").repeat(22);
    s.truncate(199);
    s.push('\n');
    s.into_bytes()
}

/// 230 bytes, so a prefix of either is neither.
fn new(i: usize) -> Vec<u8> {
    let mut s = format!("new content of file {i:04}; ").repeat(9);
    s.truncate(229);
    s.push('\n');
    s.into_bytes()
}

fn edited(k: usize) -> String {
    format!("/etc/edit/e{k}")
}

fn edited_old(k: usize) -> String {
    format!("# edited by hand\nKEY{k}=old\nKEEP=1\nremove me\nKEY{k}=duplicate\n# end\n")
}

fn edited_new(k: usize) -> String {
    format!("# edited by hand\nKEY{k}=new{k}\nKEEP=1\n# end\nadded {k}\n")
}

fn policy() -> String {
    let mut p = String::with_capacity(FILES * 330);
    for i in 0..FILES {
        let content = String::from_utf8(new(i)).expect("ASCII");
        p.push_str(&format!(
            "[[file]]\npath = \"{}\"\ncontent = \"{}\\n\"\nmode = \"{NEW_MODE:04o}\"\n\n",
            path(i),
            content.trim_end()
        ));
    }
    for k in 0..EDITED {
        let f = edited(k);
        p.push_str(&format!(
            "[[setting]]\nfile = \"{f}\"\nkey = \"KEY{k}\"\nvalue = \"new{k}\"\n\n\
             [[line]]\nfile = \"{f}\"\nline = \"remove me\"\nstate = \"absent\"\n\n\
             [[line]]\nfile = \"{f}\"\nline = \"added {k}\"\n\n"
        ));
    }
    p
}

/// What a managed file holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Old,
    New,
}

/// Every managed file is wholly old (content and mode) or wholly new; returns each
/// file's state. A temp file may remain only beside a file still old, where the
/// next write to it reuses the name.
#[track_caller]
fn check_whole(sb: &Sandbox, after: &str) -> Vec<State> {
    let mut states = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let p = sb.at(&path(i));
        let content = fs::read(&p).unwrap_or_else(|e| panic!("{after}: {}: {e}", path(i)));
        let mode = fs::symlink_metadata(&p).expect("just read").mode() & 0o7777;
        let state = if content == old(i) && mode == OLD_MODE {
            State::Old
        } else if content == new(i) && mode == NEW_MODE {
            State::New
        } else {
            panic!(
                "{after}: {} is torn: {} bytes, mode {mode:04o}: {:?}",
                path(i),
                content.len(),
                String::from_utf8_lossy(&content)
            );
        };
        states.push(state);
    }
    for k in 0..EDITED {
        let p = sb.at(&edited(k));
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{after}: {}: {e}", edited(k)));
        assert!(
            text == edited_old(k) || text == edited_new(k),
            "{after}: {} is neither old nor new: {text:?}",
            edited(k)
        );
        assert_eq!(
            fs::symlink_metadata(&p).expect("just read").mode() & 0o7777,
            OLD_MODE,
            "{after}: an edit changed the mode of {}",
            edited(k)
        );
    }
    let index: HashMap<PathBuf, usize> = (0..FILES).map(|i| (sb.at(&path(i)), i)).collect();
    for tmp in temp_files(&sb.root) {
        let name = tmp
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let dest = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tenet-new"))
            .map(|n| tmp.with_file_name(n));
        let dest_is_old = dest.as_ref().is_some_and(|d| {
            index.get(d).is_some_and(|&i| states[i] == State::Old)
                || (0..EDITED).any(|k| {
                    sb.at(&edited(k)) == *d
                        && fs::read_to_string(d).is_ok_and(|t| t == edited_old(k))
                })
        });
        assert!(
            dest_is_old,
            "{after}: temp file {} is left beside a file no run will rewrite",
            tmp.display()
        );
    }
    states
}

/// (inode, ctime) of `p`, to tell a temp file made by this run from a stale one.
fn identity(p: &Path) -> Option<(u64, i64, i64)> {
    fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

fn temp_of(sb: &Sandbox, i: usize) -> PathBuf {
    let p = sb.at(&path(i));
    let name = format!(
        ".{}.tenet-new",
        p.file_name().unwrap_or_default().to_string_lossy()
    );
    p.with_file_name(name)
}

/// How many managed files have their new mode (set before the rename, so: renamed).
fn count_new(sb: &Sandbox) -> usize {
    (0..FILES)
        .filter(|&i| {
            fs::symlink_metadata(sb.at(&path(i)))
                .is_ok_and(|m| m.permissions().mode() & 0o7777 == NEW_MODE)
        })
        .count()
}

/// How a killed run ended.
#[derive(Debug)]
enum Ended {
    /// SIGKILL arrived while it ran.
    Killed,
    /// It finished (successfully) before the kill.
    Finished,
}

/// Starts an apply, waits until `reached` holds (or the run ends), kills it.
fn kill_when(sb: &Sandbox, what: &str, reached: impl Fn() -> bool) -> Ended {
    let mut child = util::agent()
        .arg("apply")
        .arg(&sb.policy)
        .arg("--root")
        .arg(&sb.root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tenet-agent");
    let start = Instant::now();
    while !reached() {
        if let Some(status) = child.try_wait().expect("poll child") {
            let code = status.code().expect("not killed yet");
            assert_eq!(
                code, 0,
                "the run to kill at {what} ended by itself, exit {code}"
            );
            return Ended::Finished;
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run to kill at {what} neither got there nor ended");
        }
        thread::sleep(Duration::from_micros(500));
    }
    child.kill().expect("kill tenet-agent");
    let status = child.wait().expect("reap tenet-agent");
    match (status.signal(), status.code()) {
        (Some(9), _) => Ended::Killed,
        (_, Some(code)) => {
            assert_eq!(code, 0, "the run to kill at {what} failed, exit {code}");
            Ended::Finished
        }
        other => panic!("the run to kill at {what} ended oddly: {other:?}"),
    }
}

#[test]
fn a_killed_run_leaves_every_file_old_or_new_and_the_next_run_converges() {
    let sb = Sandbox::new();
    sb.policy(&[("big.toml", &policy())]);
    for i in 0..FILES {
        write_mode(&sb.at(&path(i)), &old(i), OLD_MODE);
    }
    for k in 0..EDITED {
        write_mode(&sb.at(&edited(k)), edited_old(k).as_bytes(), OLD_MODE);
    }

    let mut log = Vec::new();
    // While staging: the temp file of file j appears (a new one, not a stale one).
    for n in 0..STAGING_KILLS {
        let j = 1 + n * (FILES - 1) / STAGING_KILLS;
        let tmp = temp_of(&sb, j);
        let before = identity(&tmp);
        let what = format!("staging of file {j}");
        let t = Instant::now();
        let ended = kill_when(&sb, &what, || {
            identity(&tmp).is_some_and(|id| Some(id) != before)
        });
        let took = t.elapsed();
        let states = check_whole(&sb, &format!("kill at {what}"));
        let done = states.iter().filter(|s| **s == State::New).count();
        log.push(format!(
            "{what}: {ended:?} after {took:?}, {done} files new"
        ));
    }
    // While renaming: so many files have their new content, spread over what is
    // still old. The agent may rename in any order (and on several threads), so
    // progress is a count, not a position.
    for n in 0..=RENAME_KILLS {
        let done = count_new(&sb);
        let target = if n == RENAME_KILLS {
            FILES
        } else {
            done + (FILES - done) / (RENAME_KILLS - n + 1)
        };
        let what = format!("rename number {target}");
        let t = Instant::now();
        let ended = kill_when(&sb, &what, || count_new(&sb) >= target);
        let took = t.elapsed();
        let states = check_whole(&sb, &format!("kill at {what}"));
        let done = states.iter().filter(|s| **s == State::New).count();
        log.push(format!(
            "{what}: {ended:?} after {took:?}, {done} files new"
        ));
    }
    let killed = log.iter().filter(|l| l.contains("Killed")).count();
    assert!(
        killed >= 10,
        "only {killed} of {} kills landed while the run was going on:\n{}",
        log.len(),
        log.join("\n")
    );

    let t = Instant::now();
    let converge = sb.apply(&["--json"]);
    log.push(format!("converge {:?}", t.elapsed()));
    converge.expect_code(0);
    let report = converge.report();
    assert_eq!(report.count("failed"), 0, "{}", report.summary);
    assert_eq!(report.count("blocked"), 0, "{}", report.summary);
    let states = check_whole(&sb, "the converging apply");
    assert!(states.iter().all(|s| *s == State::New));
    for k in 0..EDITED {
        assert_eq!(
            fs::read_to_string(sb.at(&edited(k))).unwrap(),
            edited_new(k)
        );
    }
    let left = temp_files(&sb.root);
    assert!(
        left.is_empty(),
        "the converging apply left {} temp files, such as {}\nkills:\n{}",
        left.len(),
        left[0].display(),
        log.join("\n")
    );

    let again = sb.apply(&["--json"]);
    again.expect_code(0);
    let again = again.report();
    assert_eq!(again.count("repaired"), 0, "{}", again.summary);
    assert_eq!(again.events.len(), FILES + 3 * EDITED);
    assert!(
        again.statuses().iter().all(|(_, s)| s == "kept"),
        "{}",
        again.summary
    );
}

/// A run killed while staging leaves temp files and its journal; the next run
/// removes the temp files even where the files themselves are already right.
#[test]
fn temp_files_of_an_interrupted_run_are_removed_by_the_next_run() {
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
    )]);
    write(&sb.at("/etc/motd"), b"hi\n");
    write(&sb.at("/etc/.motd.tenet-new"), b"half");
    write(&sb.at("/etc/.other.tenet-new"), b"half");
    write(&sb.at("/etc/.keep.me"), b"not ours");
    let etc = sb.at("/etc");
    write(
        &sb.state.join("staging.0"),
        format!("{}\n", etc.display()).as_bytes(),
    );

    let r = sb.apply_outside_state(&["--json"]);
    r.expect_code(0);
    assert_eq!(r.report().count("repaired"), 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("removed 2 temp files left by an interrupted run"),
        "{}",
        r.stdout
    );
    assert!(temp_files(&etc).is_empty(), "{:?}", temp_files(&etc));
    assert!(
        sb.at("/etc/.keep.me").exists(),
        "only tenet's temp names are removed"
    );
    assert!(
        !sb.state.join("staging.0").exists(),
        "the journal is gone once recovered"
    );
}
