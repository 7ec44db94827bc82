//! `tenet-agent event`, `plan show`, `plan simulate` and `watch` end to end: real
//! processes in sandbox roots, plans written as `[[plan]]` TOML.
//!
//! The executor and journal are also covered without a policy tree by the unit
//! tests in `agent/src/failover/`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::util::{self, Sandbox, listing, write};

const CLUSTER: &str = r#"
[cluster]
name = "t"

[[member]]
name = "alpha"
hostname = "alpha"
addresses = [{ ip = "10.0.0.1", role = "boot" }]

[[member]]
name = "beta"
hostname = "beta"
addresses = [{ ip = "10.0.0.2", role = "boot" }]

[[package]]
name = "dce"
hostname = "dcecell"
ip = "10.0.0.9"
members = ["alpha", "beta"]
configuration = "cascading"
"#;

/// A guard against a hung process, not a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

/// A sandbox for member beta: the cluster, `plans` as plans.toml, and the
/// kernel's hostname (beneath the root) set to beta.
fn sandbox(plans: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.policy(&[("cluster.toml", CLUSTER), ("plans.toml", plans)]);
    write(&sb.at("/proc/sys/kernel/hostname"), b"beta\n");
    sb
}

/// The arguments that point a command at the sandbox, as member beta.
fn place(sb: &Sandbox) -> Vec<String> {
    [
        "--policy",
        path(&sb.policy),
        "--root",
        path(&sb.root),
        "--state-dir",
        path(&sb.state),
        "--fact",
        "member=beta",
        "--fact",
        "holds=dce",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `event KIND NAME` in the sandbox with extra arguments.
fn event(sb: &Sandbox, kind: &str, name: &str, extra: &[&str]) -> util::Run {
    let mut args = vec!["event".to_string(), kind.to_string(), name.to_string()];
    args.extend(place(sb));
    args.extend(extra.iter().map(ToString::to_string));
    util::run(args)
}

/// `event` started in the background.
fn spawn_event(sb: &Sandbox, extra: &[&str]) -> Child {
    let mut args = vec![
        "event".to_string(),
        "package-start".to_string(),
        "dce".to_string(),
    ];
    args.extend(place(sb));
    args.extend(extra.iter().map(ToString::to_string));
    util::agent()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tenet-agent")
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// Polls `cond` until it holds; on the deadline fails with what was last seen.
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match cond() {
            Ok(()) => return,
            Err(seen) if start.elapsed() > DEADLINE => {
                panic!("timed out waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits for a child to exit (within the deadline) and returns its exit code and output.
fn finish(mut child: Child) -> util::Run {
    wait_for("the agent to exit", || match child.try_wait() {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("still running".to_string()),
        Err(e) => Err(e.to_string()),
    });
    let out = child.wait_with_output().expect("agent output");
    util::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A step appending `text` to /log beneath the root.
fn log_step(name: &str, text: &str) -> String {
    format!(
        "[[plan.step]]\ntype = \"command\"\nname = \"{name}\"\nshell = \"echo {text} >> $TENET_ROOT/log\"\ntimeout = \"30s\"\n\n"
    )
}

fn takeover(steps: &str) -> String {
    format!(
        "[[plan]]\nname = \"dce-takeover\"\non = \"package-start\"\npackage = \"dce\"\n\n{steps}"
    )
}

const SAVE: &str = "[[plan.step]]\ntype = \"hostname-save\"\nname = \"save hostname\"\n\n";
const RESTORE: &str =
    "[[plan.step]]\ntype = \"hostname-restore\"\nname = \"restore hostname\"\nalways = true\n\n";

/// A step renaming the member the way a sandbox models it: the kernel's hostname is
/// the file /proc/sys/kernel/hostname beneath the root.
const SET: &str = "[[plan.step]]\ntype = \"command\"\nname = \"set hostname\"\nshell = \"echo dcecell > $TENET_ROOT/proc/sys/kernel/hostname\"\ntimeout = \"30s\"\n\n";

// ---------------------------------------------------------------------------
// Without plans: ids, journals written by hand, the lock, no cache.

#[test]
fn an_id_that_is_not_a_safe_file_name_exits_2() {
    let sb = sandbox("");
    for bad in ["../escape", "a/b", ".hidden", "has space"] {
        let r = event(&sb, "package-start", "dce", &["--id", bad]);
        r.expect_code(2);
        assert!(r.stderr.contains("event id"), "{bad}: {}", r.stderr);
    }
    assert!(!sb.state.join("events").exists());
}

/// Writes a journal as a run of the agent would have left it.
fn journal(sb: &Sandbox, id: &str, records: &[Value]) -> PathBuf {
    let p = sb.state.join("events").join(format!("{id}.jsonl"));
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    write(&p, text.as_bytes());
    p
}

fn begin(id: &str) -> Value {
    json!({"type":"event_begin","id":id,"event":"package-start:dce","member":"beta",
           "source":"policy tree P","time":"2026-01-01T00:00:00Z","pid":1,
           "plans":[{"plan":"p","steps":["a","b"]}]})
}

fn start(index: usize, name: &str) -> Value {
    json!({"type":"step_start","plan":"p","index":index,"name":name,"time":"2026-01-01T00:00:01Z"})
}

fn end(index: usize, name: &str, result: &str) -> Value {
    json!({"type":"step_end","plan":"p","index":index,"name":name,"result":result,
           "reason":"exited with status 3: boom","exit_code":3,"duration_ms":5,"output":"boom\n"})
}

#[test]
fn an_interrupted_event_exits_8_names_the_step_and_runs_nothing() {
    let sb = sandbox("");
    let p = journal(
        &sb,
        "ev-int",
        &[
            begin("ev-int"),
            start(1, "a"),
            end(1, "a", "ok"),
            start(2, "b"),
        ],
    );
    let before = read(&p);
    let root_before = listing(&sb.root);
    let r = event(&sb, "package-start", "dce", &["--id", "ev-int"]);
    r.expect_code(8);
    assert!(
        r.stderr.contains(
            "event package-start:dce (id ev-int) interrupted at step 2 `b` of plan p, started at 2026-01-01T00:00:01Z; not re-run; pass --resume to continue"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(read(&p), before, "the journal changed");
    assert_eq!(listing(&sb.root), root_before);
}

#[test]
fn a_complete_journal_is_replayed_with_its_exit_code() {
    let sb = sandbox("");
    journal(
        &sb,
        "ev-done",
        &[
            begin("ev-done"),
            start(1, "a"),
            end(1, "a", "failed"),
            json!({"type":"step_end","plan":"p","index":2,"name":"b","result":"skipped","duration_ms":0}),
            json!({"type":"event_end","result":"failed","exit_code":1,"time":"2026-01-01T00:00:02Z"}),
        ],
    );
    let r = event(&sb, "package-start", "dce", &["--id", "ev-done"]);
    r.expect_code(1);
    assert!(r.stdout.contains("replay"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("failed at step 1 `a` of plan p: exited with status 3: boom"),
        "{}",
        r.stdout
    );
    let json = event(&sb, "package-start", "dce", &["--id", "ev-done", "--json"]);
    json.expect_code(1);
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let steps: Vec<&Value> = lines.iter().filter(|l| l["type"] == "step").collect();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["status"], "failed");
    assert_eq!(steps[0]["exit_code"], 3);
    assert_eq!(steps[1]["status"], "skipped");
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["type"], "event");
    assert_eq!(summary["replay"], true);
    assert_eq!(summary["exit_code"], 1);
    // The same id for another event is refused.
    event(&sb, "package-stop", "dce", &["--id", "ev-done"]).expect_code(2);
}

#[test]
fn event_waits_for_the_run_lock_and_gives_up_after_lock_timeout() {
    let sb = sandbox("");
    let lock_path = sb.state.join("run.lock");
    write(&lock_path, b"pid 1 run started at unix time 1\n");
    let holder = File::options()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    holder.try_lock().unwrap();

    let r = event(
        &sb,
        "package-start",
        "dce",
        &["--id", "l1", "--lock-timeout", "1s"],
    );
    r.expect_code(6);
    assert!(
        r.stderr.contains("another run is in progress (pid 1 run"),
        "{}",
        r.stderr
    );

    let child = spawn_event(&sb, &["--id", "l2", "--lock-timeout", "60s"]);
    let pid = child.id();
    // It is waiting once it has the lock file open (and it cannot have the lock).
    wait_for("the event to open the lock file", || {
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| e.to_string())?;
        fds.filter_map(Result::ok)
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == lock_path))
            .then_some(())
            .ok_or_else(|| "run.lock not open yet".to_string())
    });
    assert!(
        !sb.state.join("events/l2.jsonl").exists(),
        "ran while locked"
    );
    drop(holder);
    let r = finish(child);
    r.expect_code(0);
    assert!(sb.state.join("events/l2.jsonl").is_file());
}

#[test]
fn event_from_a_configuration_with_no_cached_bundle_exits_5() {
    let sb = sandbox("");
    let config = sb.outside.join("agent.toml");
    write(
        &config,
        format!(
            "member = \"beta\"\nmaster = \"127.0.0.1:1\"\ntrusted_root = \"root.toml\"\nstate_dir = \"{}\"\nroot = \"{}\"\n",
            path(&sb.state),
            path(&sb.root)
        )
        .as_bytes(),
    );
    let r = util::run(["event", "package-start", "dce", "--config", path(&config)]);
    r.expect_code(5);
    assert!(r.stderr.contains("no cached bundle in"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------
// With plans: these need the [[plan]] loader.

#[test]
fn steps_run_in_order_and_an_id_runs_once() {
    let sb = sandbox(&takeover(&format!(
        "{}{}{}",
        log_step("one", "one"),
        log_step("two", "two"),
        log_step("three", "three")
    )));
    let r = event(&sb, "package-start", "dce", &["--id", "once", "--json"]);
    r.expect_code(0);
    assert_eq!(read(&sb.at("/log")), "one\ntwo\nthree\n");
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let steps: Vec<(String, u64, String)> = lines
        .iter()
        .filter(|l| l["type"] == "step")
        .map(|l| {
            (
                l["step"].as_str().unwrap().to_string(),
                l["index"].as_u64().unwrap(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("one".to_string(), 1, "ok".to_string()),
            ("two".to_string(), 2, "ok".to_string()),
            ("three".to_string(), 3, "ok".to_string())
        ]
    );
    assert_eq!(lines.last().unwrap()["type"], "event");

    let again = event(&sb, "package-start", "dce", &["--id", "once"]);
    again.expect_code(0);
    assert!(again.stdout.contains("replay"), "{}", again.stdout);
    assert_eq!(read(&sb.at("/log")), "one\ntwo\nthree\n", "ran twice");

    // Without --id, an id is made up and printed; the package was started here
    // already (by `once`), so nothing runs again.
    let fresh = event(&sb, "package-start", "dce", &[]);
    fresh.expect_code(0);
    assert!(
        fresh.stdout.starts_with("event package-start:dce, id "),
        "{}",
        fresh.stdout
    );
    assert!(
        fresh
            .stdout
            .contains("was already started here by event once"),
        "{}",
        fresh.stdout
    );
    assert_eq!(read(&sb.at("/log")), "one\ntwo\nthree\n");
}

#[test]
fn a_takeover_reported_twice_runs_the_start_plans_once_per_boot() {
    let sb = sandbox(&takeover(&log_step("start", "start")));
    let boot = sb.at("/proc/sys/kernel/random/boot_id");
    write(&boot, b"boot-1\n");
    // The OCF agent's package-start, then the event script's node-down (alpha ranks
    // above beta, so for beta, which holds dce, that is a takeover).
    event(&sb, "package-start", "dce", &["--id", "ocf-1"]).expect_code(0);
    let marker = read(&sb.state.join("packages/dce.toml"));
    assert!(marker.contains("event_id = \"ocf-1\""), "{marker}");
    assert!(marker.contains("boot_id = \"boot-1\""), "{marker}");
    let down = event(&sb, "node-down", "alpha", &["--id", "nd-1"]);
    down.expect_code(0);
    assert!(
        down.stdout
            .contains("`dce` was already started here by event ocf-1 at "),
        "{}",
        down.stdout
    );
    assert_eq!(read(&sb.at("/log")), "start\n", "the takeover ran twice");
    // The same id again is a replay, not a refusal.
    event(&sb, "package-start", "dce", &["--id", "ocf-1"]).expect_code(0);
    assert_eq!(read(&sb.at("/log")), "start\n");

    // Stopped here: the record goes, and the next takeover runs.
    event(&sb, "package-stop", "dce", &["--id", "stop-1"]).expect_code(0);
    assert!(!sb.state.join("packages/dce.toml").exists());
    event(&sb, "node-down", "alpha", &["--id", "nd-2"]).expect_code(0);
    assert_eq!(read(&sb.at("/log")), "start\nstart\n");

    // After a reboot (another boot id), the record is stale: the package is not here.
    write(&boot, b"boot-2\n");
    event(&sb, "node-down", "alpha", &["--id", "nd-3"]).expect_code(0);
    assert_eq!(read(&sb.at("/log")), "start\nstart\nstart\n");
}

#[test]
fn a_failed_step_stops_the_plan_and_the_hostname_is_restored() {
    let failing = "[[plan.step]]\ntype = \"command\"\nname = \"start dce\"\nshell = \"echo starting; echo no cell >&2; exit 3\"\ntimeout = \"30s\"\n\n";
    let sb = sandbox(&takeover(&format!(
        "{SAVE}{SET}{}{failing}{}{RESTORE}",
        log_step("before", "before"),
        log_step("after", "after"),
    )));
    let r = event(&sb, "package-start", "dce", &["--id", "f1"]);
    r.expect_code(1);
    assert!(
        r.stdout.contains(
            "failed at step 4 `start dce` of plan dce-takeover: failed: /bin/sh exited with status 3: no cell"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("| no cell"),
        "the output tail: {}",
        r.stdout
    );
    assert_eq!(read(&sb.at("/log")), "before\n");
    assert_eq!(read(&sb.at("/proc/sys/kernel/hostname")), "beta\n");
    // The journal recorded it; the same id again runs nothing and exits 1 again.
    let again = event(&sb, "package-start", "dce", &["--id", "f1"]);
    again.expect_code(1);
    assert_eq!(read(&sb.at("/log")), "before\n");
}

#[test]
fn a_crash_during_a_step_exits_8_until_resume_finishes_the_event() {
    let sleepy = "[[plan.step]]\ntype = \"command\"\nname = \"slow\"\nshell = \"echo slow >> $TENET_ROOT/log; if [ ! -e $TENET_ROOT/resumed ]; then echo $$ > $TENET_ROOT/sleeping; sleep 60; fi\"\ntimeout = \"120s\"\n\n";
    let sb = sandbox(&takeover(&format!(
        "{SAVE}{SET}{}{sleepy}{}{RESTORE}",
        log_step("one", "one"),
        log_step("three", "three"),
    )));
    let child = spawn_event(&sb, &["--id", "crash"]);
    let pid = child.id();
    let sleeping = sb.at("/sleeping");
    wait_for("the slow step to start", || {
        read(&sleeping)
            .trim()
            .parse::<i32>()
            .map(|_| ())
            .map_err(|_| read(&sb.at("/log")))
    });
    signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let sleeper: i32 = read(&sleeping).trim().parse().unwrap();
    // The step's command has its own process group; it would outlive the agent.
    let _ = signal::killpg(Pid::from_raw(sleeper), Signal::SIGKILL);
    let killed = finish(child);
    assert_eq!(killed.code, -1, "not killed: {killed:?}");
    assert_eq!(read(&sb.at("/log")), "one\nslow\n");
    assert_eq!(read(&sb.at("/proc/sys/kernel/hostname")), "dcecell\n");

    let r = event(&sb, "package-start", "dce", &["--id", "crash"]);
    r.expect_code(8);
    assert!(
        r.stderr
            .contains("interrupted at step 4 `slow` of plan dce-takeover, started at "),
        "{}",
        r.stderr
    );
    assert_eq!(read(&sb.at("/log")), "one\nslow\n", "ran something");

    write(&sb.at("/resumed"), b"");
    let resumed = event(&sb, "package-start", "dce", &["--id", "crash", "--resume"]);
    resumed.expect_code(0);
    assert_eq!(read(&sb.at("/log")), "one\nslow\nslow\nthree\n");
    assert_eq!(read(&sb.at("/proc/sys/kernel/hostname")), "beta\n");
    // Complete now: replayed, not run.
    let replay = event(&sb, "package-start", "dce", &["--id", "crash"]);
    replay.expect_code(0);
    assert!(replay.stdout.contains("replay"), "{}", replay.stdout);
    assert_eq!(read(&sb.at("/log")), "one\nslow\nslow\nthree\n");
}

#[test]
fn plan_show_and_simulate_describe_the_steps_and_change_nothing() {
    let start = "[[plan.step]]\ntype = \"command\"\nname = \"start dce\"\nargv = [\"/usr/bin/start.dce\", \"${member}\"]\ntimeout = \"30s\"\n\n";
    let cell = "[[plan.step]]\ntype = \"file\"\nname = \"cell name\"\npath = \"/etc/dce/cell\"\ncontent = \"dcecell\\n\"\n\n";
    let sb = sandbox(&takeover(&format!("{SAVE}{SET}{cell}{start}{RESTORE}")));
    let before = listing(&sb.root);
    let mut args = vec!["plan".to_string(), "show".to_string()];
    args.extend(place(&sb));
    let show = util::run(&args);
    show.expect_code(0);
    for line in [
        "plan dce-takeover (plans.toml:",
        "  on package-start of package dce",
        "  1. save hostname: hostname-save",
        "  2. set hostname: command sh -c ",
        "  3. cell name: file /etc/dce/cell",
        "  4. start dce: command /usr/bin/start.dce beta (timeout 30s)",
        "  5. restore hostname: hostname-restore [always]",
    ] {
        assert!(
            show.stdout.contains(line),
            "no {line:?} in:\n{}",
            show.stdout
        );
    }
    let mut args = vec![
        "plan".to_string(),
        "simulate".to_string(),
        "--member".to_string(),
        "beta".to_string(),
        "--event".to_string(),
        "package-start:dce".to_string(),
        "--holds".to_string(),
        "dce".to_string(),
    ];
    args.extend(place(&sb));
    let sim = util::run(&args);
    sim.expect_code(0);
    for line in [
        "simulating package-start:dce on member beta",
        "plan dce-takeover (package-start dce)",
        "would change: created /etc/dce/cell (8 bytes",
        "would run",
        "would set the hostname back to the saved one",
    ] {
        assert!(sim.stdout.contains(line), "no {line:?} in:\n{}", sim.stdout);
    }
    assert_eq!(
        listing(&sb.root),
        before,
        "show or simulate changed the root"
    );
    assert!(!sb.state.join("events").exists());
}

#[test]
fn watch_repeats_package_running_plans_until_sigterm() {
    let plans = format!(
        "[[plan]]\nname = \"dce-locks\"\non = \"package-running\"\npackage = \"dce\"\nevery = \"1s\"\n\n{}",
        log_step("migrate locks", "round")
    );
    let sb = sandbox(&plans);
    journal(&sb, "old", &[begin("old"), start(1, "a")]);
    let mut args = vec!["watch".to_string(), "dce".to_string()];
    args.extend(place(&sb));
    let child = util::agent()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");
    wait_for("two rounds", || {
        let log = read(&sb.at("/log"));
        (log.lines().count() >= 2).then_some(()).ok_or(log)
    });
    signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let r = finish(child);
    r.expect_code(0);
    assert!(r.stdout.contains("dce round 1: ok"), "{}", r.stdout);
    assert!(r.stdout.contains("dce round 2: ok"), "{}", r.stdout);
    assert!(
        r.stdout
            .starts_with("warning: event package-start:dce (id old) did not finish"),
        "{}",
        r.stdout
    );
    assert_eq!(
        fs::read_dir(sb.state.join("events")).unwrap().count(),
        1,
        "watch rounds are not journalled"
    );
}

#[test]
fn simulating_another_member_uses_its_hostname_and_holds_only_what_holds_says() {
    let who = "[[plan.step]]\ntype = \"line\"\nname = \"who\"\nfile = \"/etc/who\"\nline = \"${hostname}\"\ncreate = true\n\n";
    let sb = sandbox(&takeover(who));
    // This machine is alpha; the simulation is beta's view.
    let base = |member: &str, ev: &str| {
        vec![
            "plan".to_string(),
            "simulate".to_string(),
            "--member".to_string(),
            member.to_string(),
            "--event".to_string(),
            ev.to_string(),
            "--policy".to_string(),
            path(&sb.policy).to_string(),
            "--root".to_string(),
            path(&sb.root).to_string(),
            "--state-dir".to_string(),
            path(&sb.state).to_string(),
            "--fact".to_string(),
            "member=alpha".to_string(),
        ]
    };
    let sim = util::run(base("beta", "package-start:dce"));
    sim.expect_code(0);
    assert!(
        sim.stdout.contains("1. who: line in /etc/who: beta"),
        "{}",
        sim.stdout
    );
    assert!(
        sim.stdout.contains("beta is not this machine's member: it holds nothing (only what --holds says), its hostname is beta"),
        "{}",
        sim.stdout
    );
    // Whatever this machine's addresses are, beta holds nothing it was not told.
    let down = util::run(base("beta", "node-down:alpha"));
    down.expect_code(0);
    assert!(
        down.stdout
            .contains("beta does not hold `dce` after alpha left"),
        "{}",
        down.stdout
    );
    let mut held = base("beta", "node-down:alpha");
    held.extend(["--holds".to_string(), "dce".to_string()]);
    let held = util::run(held);
    held.expect_code(0);
    assert!(
        held.stdout
            .contains("plan dce-takeover (package-start dce)"),
        "{}",
        held.stdout
    );
    // This machine's own member keeps this machine's facts.
    let here = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_ne!(here, "beta", "the test needs a machine not named beta");
    let mine = util::run(base("alpha", "package-start:dce"));
    mine.expect_code(0);
    assert!(
        mine.stdout.contains(&format!("line in /etc/who: {here}")),
        "{}",
        mine.stdout
    );
    assert!(
        !mine.stdout.contains("not this machine's member"),
        "{}",
        mine.stdout
    );
}

/// Waits until process `pid` has `lock` open: it is waiting for the lock (held here).
fn wait_until_waiting(pid: u32, lock: &Path) {
    wait_for("the agent to open the lock file", || {
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| e.to_string())?;
        fds.filter_map(Result::ok)
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == lock))
            .then_some(())
            .ok_or_else(|| "run.lock not open yet".to_string())
    });
}

#[test]
fn apply_and_run_wait_for_a_watch_round_to_release_the_run_lock() {
    let sb = sandbox("");
    let lock_path = sb.state.join("run.lock");
    write(&lock_path, b"pid 1 watch started at unix time 1\n");
    let hold = || {
        let f = File::options()
            .read(true)
            .write(true)
            .open(&lock_path)
            .unwrap();
        f.try_lock().unwrap();
        f
    };
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "apply",
            path(&sb.policy),
            "--root",
            path(&sb.root),
            "--state-dir",
            path(&sb.state),
            "--fact",
            "member=beta",
        ];
        args.extend(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };

    // apply does not wait unless asked.
    let holder = hold();
    let r = util::run(apply(&[]));
    r.expect_code(6);
    assert!(r.stderr.contains("pid 1 watch"), "{}", r.stderr);
    let child = util::agent()
        .args(apply(&["--lock-timeout", "60s"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start apply");
    wait_until_waiting(child.id(), &lock_path);
    drop(holder);
    finish(child).expect_code(0);

    // run waits 30 s by default.
    let config = sb.outside.join("agent.toml");
    write(
        &config,
        format!(
            "member = \"beta\"\nmaster = \"127.0.0.1:1\"\ntrusted_root = \"root.toml\"\nstate_dir = \"{}\"\nroot = \"{}\"\n",
            path(&sb.state),
            path(&sb.root)
        )
        .as_bytes(),
    );
    // An interrupted event is reported by every run.
    journal(&sb, "old", &[begin("old"), start(1, "a")]);
    let holder = hold();
    let r = util::run(["run", "--config", path(&config), "--lock-timeout", "0s"]);
    r.expect_code(6);
    let child = util::agent()
        .args(["run", "--config", path(&config)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start run");
    wait_until_waiting(child.id(), &lock_path);
    drop(holder);
    let r = finish(child);
    // Past the lock, it fails for want of a trusted root and a master; not 6.
    assert_ne!(r.code, 6, "{r:?}");
    assert!(
        !r.stderr.contains("another run is in progress"),
        "{}",
        r.stderr
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains(
            "event package-start:dce (id old) did not finish: interrupted at step 1 `a` of plan p"
        ),
        "{r:?}"
    );
}

#[test]
fn every_event_reports_interrupted_events_of_other_ids_and_runs_all_the_same() {
    let sb = sandbox(&takeover(&log_step("start", "start")));
    journal(&sb, "old", &[begin("old"), start(1, "a")]);
    journal(
        &sb,
        "older",
        &[begin("older"), start(1, "a"), end(1, "a", "ok")],
    );
    let r = event(&sb, "package-stop", "dce", &["--id", "new"]);
    r.expect_code(0);
    for line in [
        "warning: event package-start:dce (id old) did not finish: interrupted at step 1 `a` of plan p, started at 2026-01-01T00:00:01Z, last written ",
        "warning: event package-start:dce (id older) did not finish: interrupted after step 1 `a` of plan p ended",
        "event package-stop:dce (id new) runs all the same",
    ] {
        assert!(r.stdout.contains(line), "no {line:?} in:\n{}", r.stdout);
    }
    // A finished event is not reported.
    let r = event(&sb, "package-stop", "dce", &["--id", "newer"]);
    assert!(!r.stdout.contains("(id new)"), "{}", r.stdout);
}

#[test]
fn a_journal_without_its_begin_record_counts_as_never_run() {
    let sb = sandbox(&takeover(&log_step("start", "start")));
    // An older agent crashed between creating the journal and writing its first record.
    journal(&sb, "torn", &[]);
    let r = event(&sb, "package-start", "dce", &["--id", "torn"]);
    r.expect_code(0);
    assert!(r.stdout.contains("has no begin record"), "{}", r.stdout);
    assert_eq!(read(&sb.at("/log")), "start\n");
    // And it is complete now: replayed.
    let again = event(&sb, "package-start", "dce", &["--id", "torn"]);
    again.expect_code(0);
    assert!(again.stdout.contains("replay"), "{}", again.stdout);
}

#[test]
fn an_event_for_a_member_the_policy_lacks_exits_3_and_runs_nothing() {
    let sb = sandbox(&takeover(SET));
    let r = event(&sb, "package-start", "dce", &["--fact", "member=zeta"]);
    r.expect_code(3);
    assert!(
        r.stderr.contains("\"zeta\"") && r.stderr.contains("alpha, beta"),
        "{}",
        r.stderr
    );
    assert_eq!(read(&sb.at("/proc/sys/kernel/hostname")), "beta\n");
}
