//! The executor on hand-built selections: strict order, the first failure stops,
//! `always` steps run, timeouts, the journal, and resuming an interrupted event.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tenet_policies::Origin;
use tenet_policies::Unresolved;
use tenet_policies::model::{CommandPromise, HostnamePromise, Program, PromiseKind};
use tenet_policies::plan::{Action, PlanRun, Selection, Step, Trigger};

use super::journal::{Begin, EventJournal, History, Record};
use super::*;
use crate::report::CollectSteps;
use crate::test_util::write;

fn origin() -> Origin {
    Origin {
        file: PathBuf::from("plans.toml"),
        line: 1,
        col: 1,
    }
}

fn step(name: &str, action: Action<String>) -> Result<Step<String>, Unresolved> {
    Ok(Step {
        name: name.to_string(),
        origin: origin(),
        always: false,
        configurations: None,
        when: None,
        action,
    })
}

fn always(s: Result<Step<String>, Unresolved>) -> Result<Step<String>, Unresolved> {
    s.map(|mut s| {
        s.always = true;
        s
    })
}

fn sh(name: &str, script: &str) -> Result<Step<String>, Unresolved> {
    sh_timeout(name, script, Duration::from_secs(30))
}

fn sh_timeout(name: &str, script: &str, timeout: Duration) -> Result<Step<String>, Unresolved> {
    step(
        name,
        Action::Promise(PromiseKind::Command(CommandPromise {
            program: Program::Shell(script.to_string()),
            timeout,
            env: BTreeMap::new(),
            cwd: None,
            unless: None,
            onlyif: None,
            creates: None,
        })),
    )
}

fn hostname(name: &str) -> Result<Step<String>, Unresolved> {
    step(
        &format!("hostname {name}"),
        Action::Promise(PromiseKind::Hostname(HostnamePromise {
            name: name.to_string(),
            persist: false,
        })),
    )
}

fn plan(name: &str, steps: Vec<Result<Step<String>, Unresolved>>) -> PlanRun {
    PlanRun {
        plan: name.to_string(),
        origin: origin(),
        trigger: Trigger::PackageStart,
        package: "dce".to_string(),
        why: "test".to_string(),
        steps,
    }
}

fn selection(runs: Vec<PlanRun>) -> Selection {
    Selection {
        member: Some("beta".to_string()),
        runs,
        notes: Vec::new(),
    }
}

/// A sandbox root and a state directory beside it.
struct Fixture {
    _dir: tempfile::TempDir,
    root: Root,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root_dir = dir.path().join("root");
        write(&root_dir.join("proc/sys/kernel/hostname"), "alpha\n");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        Fixture {
            root: Root::new(&root_dir).unwrap(),
            state,
            _dir: dir,
        }
    }

    fn cx(&self) -> Context<'_> {
        Context {
            root: &self.root,
            state_dir: &self.state,
            source: None,
        }
    }

    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.root.base().join(p)).unwrap_or_default()
    }

    fn run(
        &self,
        s: &Selection,
        journal: Option<&mut EventJournal>,
        earlier: &Earlier,
    ) -> (Outcome, CollectSteps) {
        let mut r = CollectSteps::default();
        let o = execute(s, self.cx(), journal, earlier, &mut r).unwrap();
        (o, r)
    }
}

fn statuses(r: &CollectSteps) -> Vec<(String, StepStatus)> {
    r.steps.iter().map(|s| (s.step.clone(), s.status)).collect()
}

fn log(n: &str) -> String {
    format!("echo {n} >> \"$TENET_ROOT/log\"")
}

#[test]
fn steps_run_strictly_in_order_across_plans() {
    let f = Fixture::new();
    let s = selection(vec![
        plan(
            "one",
            vec![
                sh("a", &format!("sleep 0.2; {}", log("a"))),
                sh("b", &log("b")),
            ],
        ),
        plan("two", vec![sh("c", &log("c"))]),
    ]);
    let (o, r) = f.run(&s, None, &Earlier::default());
    assert!(o.all_ok(), "{o:?} {:?}", r.steps);
    assert_eq!((o.plans, o.ok), (2, 3));
    assert_eq!(f.read("log"), "a\nb\nc\n");
    assert_eq!(r.plans, ["one", "two"]);
    assert_eq!(
        r.steps.iter().map(|s| s.index).collect::<Vec<_>>(),
        [1, 2, 1]
    );
}

#[test]
fn the_first_failure_stops_the_event_and_always_steps_restore_the_hostname() {
    let f = Fixture::new();
    let s = selection(vec![
        plan(
            "dce-takeover",
            vec![
                step("save hostname", Action::HostnameSave),
                hostname("dcecell"),
                sh("start dce", "echo starting; echo boom >&2; exit 3"),
                sh("after", &log("after")),
                always(step("restore hostname", Action::HostnameRestore)),
            ],
        ),
        plan("later", vec![always(sh("later", &log("later")))]),
    ]);
    let (o, r) = f.run(&s, None, &Earlier::default());
    assert_eq!(
        statuses(&r),
        [
            ("save hostname".into(), StepStatus::Ok),
            ("hostname dcecell".into(), StepStatus::Ok),
            ("start dce".into(), StepStatus::Failed),
            ("after".into(), StepStatus::Skipped),
            ("restore hostname".into(), StepStatus::Ok),
            ("later".into(), StepStatus::Skipped),
        ]
    );
    assert_eq!((o.ok, o.failed, o.skipped), (3, 1, 2));
    let failure = o.first_failure.unwrap();
    assert!(
        failure.starts_with(
            "step 3 `start dce` of plan dce-takeover: failed: /bin/sh exited with status 3: boom"
        ),
        "{failure}"
    );
    let failed = &r.steps[2];
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.output, "starting\nboom\n");
    assert_eq!(
        r.steps[3].reason.as_deref(),
        Some("not run: step 3 `start dce` of plan dce-takeover failed")
    );
    assert_eq!(f.read("log"), "", "a skipped step ran");
    assert_eq!(f.read("proc/sys/kernel/hostname"), "alpha\n");
}

#[test]
fn a_command_past_its_timeout_is_killed_and_fails_the_step() {
    let f = Fixture::new();
    let s = selection(vec![plan(
        "p",
        vec![sh_timeout("slow", "sleep 30", Duration::from_millis(200))],
    )]);
    let (o, r) = f.run(&s, None, &Earlier::default());
    assert_eq!(o.failed, 1);
    let reason = r.steps[0].reason.clone().unwrap();
    assert!(reason.contains("timed out after"), "{reason}");
    assert_eq!(r.steps[0].exit_code, None);
}

#[test]
fn a_step_that_cannot_be_expanded_fails() {
    let f = Fixture::new();
    let s = selection(vec![plan(
        "p",
        vec![Err(Unresolved {
            id: "command:x".to_string(),
            type_name: "command",
            origin: origin(),
            reason: "no fact `rack`".to_string(),
        })],
    )]);
    let (o, r) = f.run(&s, None, &Earlier::default());
    assert_eq!(o.failed, 1);
    assert_eq!(
        r.steps[0].reason.as_deref(),
        Some("cannot be expanded here: no fact `rack`")
    );
}

#[test]
fn restoring_without_a_saved_hostname_fails() {
    let f = Fixture::new();
    let s = selection(vec![plan(
        "p",
        vec![step("restore", Action::HostnameRestore)],
    )]);
    let (o, _) = f.run(&s, None, &Earlier::default());
    assert_eq!(o.failed, 1);
}

fn begin(s: &Selection) -> Begin {
    Begin {
        id: "ev1".to_string(),
        event: "package-start:dce".to_string(),
        member: Some("beta".to_string()),
        source: "test".to_string(),
        time: now(),
        pid: std::process::id(),
        plans: outline(s),
    }
}

#[test]
fn every_step_is_journalled_start_then_end() {
    let f = Fixture::new();
    let s = selection(vec![plan(
        "p",
        vec![sh("a", &log("a")), sh("b", "exit 4"), sh("c", &log("c"))],
    )]);
    let mut j = EventJournal::create(&f.state, begin(&s)).unwrap();
    f.run(&s, Some(&mut j), &Earlier::default());
    let h = History::read(&f.state, "ev1").unwrap().unwrap();
    let kinds: Vec<String> = h
        .records
        .iter()
        .map(|r| match r {
            Record::EventBegin(_) => "begin".to_string(),
            Record::StepStart { index, .. } => format!("start {index}"),
            Record::StepEnd(e) => format!("end {} {:?}", e.index, e.result),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "begin",
            "start 1",
            "end 1 Ok",
            "start 2",
            "end 2 Failed",
            "end 3 Skipped"
        ]
    );
    assert_eq!(h.step_ends()[&("p".to_string(), 2)].exit_code, Some(4));
}

#[test]
fn a_resumed_event_reruns_the_interrupted_step_skips_ended_ones_and_keeps_the_saved_hostname() {
    let f = Fixture::new();
    let s = selection(vec![plan(
        "dce-takeover",
        vec![
            step("save hostname", Action::HostnameSave),
            hostname("dcecell"),
            sh("a", &log("a")),
            sh("b", &log("b")),
            always(step("restore hostname", Action::HostnameRestore)),
        ],
    )]);
    // The interrupted run: saved alpha, set dcecell, ran a, was killed during b.
    let mut j = EventJournal::create(&f.state, begin(&s)).unwrap();
    let first3 = selection(vec![plan(
        "dce-takeover",
        match &s.runs[0].steps[..3] {
            [a, b, c] => vec![a.clone(), b.clone(), c.clone()],
            _ => unreachable!(),
        },
    )]);
    f.run(&first3, Some(&mut j), &Earlier::default());
    j.append(&Record::StepStart {
        plan: "dce-takeover".to_string(),
        index: 4,
        name: "b".to_string(),
        time: now(),
    })
    .unwrap();
    drop(j);
    // Meanwhile the machine was renamed: the saved name must come from the journal.
    write(&f.root.base().join("proc/sys/kernel/hostname"), "other\n");

    let h = History::read(&f.state, "ev1").unwrap().unwrap();
    assert!(h.end().is_none());
    let earlier = Earlier::from_history(&h);
    assert_eq!(earlier.hostname.as_deref(), Some("alpha"));
    let mut j = EventJournal::reopen(&h).unwrap();
    let (o, r) = f.run(&s, Some(&mut j), &earlier);
    assert!(o.all_ok(), "{o:?}");
    assert_eq!(
        r.steps
            .iter()
            .map(|e| (e.step.as_str(), e.earlier))
            .collect::<Vec<_>>(),
        [
            ("save hostname", true),
            ("hostname dcecell", true),
            ("a", true),
            ("b", false),
            ("restore hostname", false),
        ]
    );
    assert_eq!(f.read("log"), "a\nb\n");
    assert_eq!(f.read("proc/sys/kernel/hostname"), "alpha\n");
}

#[test]
fn output_tails_are_cut_at_a_character_boundary() {
    assert_eq!(tail("abc", 2), "bc");
    assert_eq!(tail("aé", 1), "");
    assert_eq!(tail("aé", 2), "é");
}
