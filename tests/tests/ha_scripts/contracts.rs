//! The contract tests (in a `cfg(test)` module so helpers get the tests' `unwrap` allowance).
#![expect(
    clippy::disallowed_methods,
    reason = "the tests run the shipped scripts as processes and write their settings"
)]

use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tenet_tests::binary;
use tenet_tests::ha::{
    Deployment, Pids, example, have_tools, kill, packaging, policyd_pid, run, text, wait_for,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// A deployment, a bundle of serial 1 and a policyd configuration on loopback.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    bundle: PathBuf,
    pids: Pids,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        // ocf-tester runs meta-data as `nobody`: the agent's directory must be reachable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dep = Deployment::new(dir.path(), &["alpha"]);
        let bundle = dir.path().join("package/bundle");
        dep.sign(&example(), 1, &bundle);
        let config = dir.path().join("policyd.toml");
        std::fs::write(
            &config,
            dep.policyd_toml(
                "alpha",
                &dir.path().join("state"),
                "127.0.0.1:0",
                "127.0.0.1:0",
            ),
        )
        .unwrap();
        Setup {
            dir,
            config,
            bundle,
            pids: Pids::default(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `tenet-policyd status` exit code; remembers the daemon's PID for cleanup.
    fn status(&mut self) -> Option<i32> {
        if let Some(pid) = policyd_pid(&self.config) {
            self.pids.push(pid);
        }
        let out = run(
            &binary("tenet-policyd"),
            &["status", "--config", self.config.to_str().unwrap()],
        );
        out.status.code()
    }

    /// Kills the listener (an application failure) and waits until it is gone.
    fn kill_listener(&mut self) {
        let pid = policyd_pid(&self.config).expect("a listener runs");
        kill(pid, "KILL");
        wait_for("the killed listener to stop answering", DEADLINE, || {
            (self.status() == Some(1)).then_some(())
        });
    }

    /// A copy of `packaging/DIR/NAMES` in a directory of its own, with a
    /// `tenet-ha.conf` naming this setup's binary, configuration and bundle.
    fn install(&self, dir: &str, names: &[&str], bundle: &Path) -> PathBuf {
        let to = self.path(dir);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        for n in names {
            std::fs::copy(packaging().join(dir).join(n), to.join(n)).unwrap();
        }
        std::fs::write(
            to.join("tenet-ha.conf"),
            format!(
                "TENET_POLICYD={}\nTENET_CONFIG={}\nTENET_BUNDLE={}\nTENET_STATE_DIR={}\nTENET_MASTER_MOVE=false\n",
                binary("tenet-policyd").display(),
                self.config.display(),
                bundle.display(),
                self.path("run").display()
            ),
        )
        .unwrap();
        to
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(pid) = policyd_pid(&self.config) {
            self.pids.push(pid);
        }
    }
}

/// Runs `script args` with exactly `env` as its environment.
/// Spawning a script this test just copied can fail with ETXTBSY while another test
/// thread forks with the copy's write descriptor still open (the child closes it at
/// exec); the error is transient, so these retry on exactly that error.
trait SpawnBusy {
    fn spawn_busy(&mut self) -> std::io::Result<std::process::Child>;
    fn output_busy(&mut self) -> std::io::Result<Output>;
}

impl SpawnBusy for Command {
    fn spawn_busy(&mut self) -> std::io::Result<std::process::Child> {
        busy_retry(|| self.spawn())
    }

    fn output_busy(&mut self) -> std::io::Result<Output> {
        busy_retry(|| self.output())
    }
}

fn busy_retry<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut left = 100;
    loop {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && left > 0 => {
                left -= 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn run_env(script: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(script)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output_busy()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// The OCF environment of the policyd agent for `action`.
fn ocf_env(s: &Setup, binary_path: &Path, interval_ms: u32) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ("OCF_ROOT", "/usr/lib/ocf".to_string()),
        ("OCF_RESOURCE_INSTANCE", "policyd-test".to_string()),
        ("OCF_RESKEY_binary", binary_path.display().to_string()),
        ("OCF_RESKEY_config", s.config.display().to_string()),
        ("OCF_RESKEY_bundle", s.bundle.display().to_string()),
        ("OCF_RESKEY_CRM_meta_interval", interval_ms.to_string()),
        ("OCF_RESKEY_CRM_meta_timeout", "20000".to_string()),
        ("HA_RSCTMP", s.path("rsctmp").display().to_string()),
        // Never this machine's agent: the master-move test turns it on with its own.
        ("OCF_RESKEY_master_move", "false".to_string()),
    ]
}

fn with(
    mut env: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.to_string()));
    env
}

fn ocf_agent(name: &str) -> PathBuf {
    packaging().join("ocf").join(name)
}

#[test]
fn ocf_tester_passes_on_the_policyd_agent() {
    if !have_tools(
        "ocf_tester_passes_on_the_policyd_agent",
        &["ocf-tester", "xmllint"],
    ) {
        return;
    }
    let mut s = Setup::new();
    // ocf-tester runs meta-data as nobody: use a copy in a directory nobody can reach.
    let agent = s.install("ocf", &["tenet-policyd"], &s.bundle.clone());
    let agent = agent.join("tenet-policyd");
    let out = Command::new(tenet_tests::ha::which("ocf-tester").unwrap())
        .args(["-v", "-n", "policyd-test"])
        .arg("-o")
        .arg(format!("config={}", s.config.display()))
        .arg("-o")
        .arg(format!("bundle={}", s.bundle.display()))
        .arg("-o")
        .arg(format!("binary={}", binary("tenet-policyd").display()))
        .arg("-o")
        .arg("master_move=false")
        .arg(&agent)
        .env("HA_RSCTMP", s.path("rsctmp"))
        .stdin(Stdio::null())
        .output_busy()
        .unwrap();
    // Whatever happened, the listener the agent started is cleaned up by PID.
    s.status();
    assert_eq!(code(&out), Some(0), "ocf-tester:\n{}", text(&out));
    assert!(text(&out).contains("passed all tests"), "{}", text(&out));
    // The agent started the listener and left it running, not serving.
    assert_eq!(s.status(), Some(7));
}

#[test]
fn the_meta_data_of_both_agents_validates() {
    if !have_tools("the_meta_data_of_both_agents_validates", &["xmllint"]) {
        return;
    }
    let rng = Path::new("/usr/share/resource-agents/metadata.rng");
    let dtd = Path::new("/usr/share/resource-agents/ra-api-1.dtd");
    if !(rng.is_file() && dtd.is_file()) {
        assert!(
            !tenet_tests::ha::ha_required(),
            "TENET_REQUIRE_HA=1 but resource-agents is not installed"
        );
        tenet_tests::ha::skip(
            "the_meta_data_of_both_agents_validates: resource-agents not installed",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["tenet-policyd", "tenet-package"] {
        let out = run_env(&ocf_agent(name), &["meta-data"], &[]);
        assert_eq!(code(&out), Some(0), "{name} meta-data: {}", text(&out));
        let xml = dir.path().join(format!("{name}.xml"));
        std::fs::write(&xml, &out.stdout).unwrap();
        for args in [
            vec!["--noout", "--relaxng", rng.to_str().unwrap(), "-"],
            vec!["--noout", "--valid", "-"],
        ] {
            // On stdin from the DTD's directory, as ocf-tester does, so SYSTEM
            // "ra-api-1.dtd" resolves.
            let out = Command::new("xmllint")
                .args(&args)
                .stdin(std::fs::File::open(&xml).unwrap())
                .current_dir("/usr/share/resource-agents")
                .output_busy()
                .unwrap();
            assert!(
                out.status.success()
                    && !String::from_utf8_lossy(&out.stderr).contains("error")
                    && !String::from_utf8_lossy(&out.stderr).contains("warning"),
                "{name}: xmllint {args:?}:\n{}",
                text(&out)
            );
        }
    }
}

#[test]
fn the_policyd_agent_maps_every_outcome_to_its_ocf_code() {
    let mut s = Setup::new();
    let agent = ocf_agent("tenet-policyd");
    let policyd = binary("tenet-policyd");
    let env = ocf_env(&s, &policyd, 10_000);
    let probe = ocf_env(&s, &policyd, 0);
    let reason = |out: &Output| String::from_utf8_lossy(&out.stderr).contains("ocf-exit-reason:");

    // Nothing runs: monitor and probe 7, stop 0 (twice).
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(7));
    assert_eq!(code(&run_env(&agent, &["monitor"], &probe)), Some(7));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["validate-all"], &env)), Some(0));

    // Not installed: validate-all 5, a probe 7, a recurring monitor 5, stop 0.
    let missing = with(
        env.clone(),
        "OCF_RESKEY_binary",
        "/nonexistent/tenet-policyd",
    );
    let out = run_env(&agent, &["validate-all"], &missing);
    assert_eq!(code(&out), Some(5), "{}", text(&out));
    assert!(reason(&out), "{}", text(&out));
    let probe_missing = with(
        probe.clone(),
        "OCF_RESKEY_binary",
        "/nonexistent/tenet-policyd",
    );
    assert_eq!(
        code(&run_env(&agent, &["monitor"], &probe_missing)),
        Some(7)
    );
    assert_eq!(code(&run_env(&agent, &["monitor"], &missing)), Some(5));
    assert_eq!(code(&run_env(&agent, &["stop"], &missing)), Some(0));
    let out = run_env(&agent, &["start"], &missing);
    assert_eq!(code(&out), Some(5), "{}", text(&out));
    let no_config = with(
        env.clone(),
        "OCF_RESKEY_config",
        "/nonexistent/policyd.toml",
    );
    assert_eq!(
        code(&run_env(&agent, &["validate-all"], &no_config)),
        Some(5)
    );

    // Misconfigured: an invalid policyd.toml or no bundle parameter is 6.
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "member = \"alpha\"\n[limits]\nmax_conections = 3\n").unwrap();
    let out = run_env(
        &agent,
        &["validate-all"],
        &with(env.clone(), "OCF_RESKEY_config", bad.to_str().unwrap()),
    );
    assert_eq!(code(&out), Some(6), "{}", text(&out));
    assert!(reason(&out), "{}", text(&out));
    let no_bundle = with(env.clone(), "OCF_RESKEY_bundle", "");
    assert_eq!(
        code(&run_env(&agent, &["validate-all"], &no_bundle)),
        Some(6)
    );
    assert_eq!(code(&run_env(&agent, &["start"], &no_bundle)), Some(6));

    // A bundle that is not there (package filesystem missing): 1, listener left up.
    let out = run_env(
        &agent,
        &["start"],
        &with(env.clone(), "OCF_RESKEY_bundle", "/nonexistent/bundle"),
    );
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(reason(&out), "{}", text(&out));
    assert_eq!(s.status(), Some(7));

    // Start: serving on return; twice is fine; a probe sees it.
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0));
    assert_eq!(code(&run_env(&agent, &["start"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["monitor"], &probe)), Some(0));

    // The listener dies (application failure): monitor 7, the recovery's stop 0, and a
    // start brings a new listener up.
    s.kill_listener();
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(7));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0));

    // Stop: not serving, the listener still up.
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    assert_eq!(s.status(), Some(7));
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(7));
    assert_eq!(code(&run_env(&agent, &["bogus"], &env)), Some(3));
}

/// A policy whose policy server package `tenet` has a master-move plan writing
/// /etc/master-moved (beneath the agent's root).
const MASTER_MOVE_POLICY: &str = r#"
[cluster]
name = "t"
policy_server = "tenet"

[[member]]
name = "alpha"
hostname = "node1"
addresses = [{ ip = "10.0.0.1", role = "boot" }]

[[package]]
name = "tenet"
hostname = "tenet-master"
ip = "10.0.0.9"
members = ["alpha"]
configuration = "rotating"

[[plan]]
name = "master-moved"
on = "master-move"

[[plan.step]]
name = "note the move"
type = "file"
path = "/etc/master-moved"
content = "the policy server moved here\n"
"#;

#[test]
fn the_policyd_agent_sends_master_move_after_a_start_and_never_fails_for_it() {
    let mut s = Setup::new();
    let agent = ocf_agent("tenet-policyd");
    let tree = s.path("mm-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("cluster.toml"), MASTER_MOVE_POLICY).unwrap();
    let root = s.path("mm-root");
    std::fs::create_dir_all(&root).unwrap();
    let env = ocf_env(&s, &binary("tenet-policyd"), 10_000);
    let env = with(env, "OCF_RESKEY_master_move", "true");
    let env = with(
        env,
        "OCF_RESKEY_agent",
        binary("tenet-agent").to_str().unwrap(),
    );
    let env = with(env, "OCF_RESKEY_agent_policy", tree.to_str().unwrap());
    let env = with(env, "OCF_RESKEY_agent_root", root.to_str().unwrap());
    let state = s.path("mm-state");
    let env = with(env, "OCF_RESKEY_agent_state_dir", state.to_str().unwrap());

    let out = run_env(&agent, &["start"], &env);
    s.status();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/master-moved")).unwrap(),
        "the policy server moved here\n",
        "{}",
        text(&out)
    );
    let journals: Vec<String> = std::fs::read_dir(state.join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        journals.iter().any(|j| j.contains("-master-move-")),
        "{journals:?}"
    );
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));

    // A master-move that cannot run (no such tree) is logged; the start still serves.
    let broken = with(env.clone(), "OCF_RESKEY_agent_policy", "/nonexistent/tree");
    let out = run_env(&agent, &["start"], &broken);
    s.status();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("master-move plans of alpha did not all run"),
        "{}",
        text(&out)
    );
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));

    // Off: nothing is sent.
    std::fs::remove_file(root.join("etc/master-moved")).unwrap();
    let off = with(env.clone(), "OCF_RESKEY_master_move", "false");
    assert_eq!(code(&run_env(&agent, &["start"], &off)), Some(0));
    s.status();
    assert!(!root.join("etc/master-moved").exists());
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
}

/// A member's sandbox for the package agent: the HA tests' DCE plans
/// (`tests/ha/policy/plans.toml`) in a local policy tree, and a root whose
/// /usr/bin/start.dce, start.dfs, stop.dfs and stop.dce are `tests/ha/fake-dce` (each
/// logs a line to ROOT/var/log/dce.log), with a stale Ep.db and credentials.
struct PackageSandbox {
    dir: tempfile::TempDir,
}

const DCE_CLUSTER: &str = r#"
[cluster]
name = "t"

[[member]]
name = "alpha"
hostname = "node1"
addresses = [{ ip = "10.0.0.1", role = "boot" }]

[[member]]
name = "beta"
hostname = "node2"
addresses = [{ ip = "10.0.0.2", role = "boot" }]

[[package]]
name = "dce"
hostname = "dcecell"
ip = "10.0.0.9"
members = ["alpha", "beta"]
configuration = "cascading"
"#;

impl PackageSandbox {
    fn new() -> PackageSandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sb = PackageSandbox { dir };
        std::fs::create_dir_all(sb.path("tree")).unwrap();
        std::fs::write(sb.path("tree/cluster.toml"), DCE_CLUSTER).unwrap();
        let ha = Path::new(env!("CARGO_MANIFEST_DIR")).join("ha");
        std::fs::copy(ha.join("policy/plans.toml"), sb.path("tree/plans.toml")).unwrap();
        std::fs::create_dir_all(sb.root("usr/bin")).unwrap();
        for name in ["start.dce", "start.dfs", "stop.dfs", "stop.dce"] {
            std::fs::copy(ha.join("fake-dce"), sb.root(&format!("usr/bin/{name}"))).unwrap();
        }
        sb.seed();
        // The agent's copy, reachable by `nobody` (ocf-tester runs meta-data as nobody).
        std::fs::create_dir_all(sb.path("ocf")).unwrap();
        std::fs::set_permissions(sb.path("ocf"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(ocf_agent("tenet-package"), sb.path("ocf/tenet-package")).unwrap();
        sb
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self, rel: &str) -> PathBuf {
        self.path("root").join(rel)
    }

    /// The departed member's endpoint map and credentials, as on shared DASD.
    fn seed(&self) {
        std::fs::create_dir_all(self.root("opt/dcelocal/var/dced")).unwrap();
        std::fs::create_dir_all(self.root("opt/dcelocal/var/security/creds")).unwrap();
        std::fs::write(self.root("opt/dcelocal/var/dced/Ep.db"), "endpoints\n").unwrap();
        for c in ["a", "b"] {
            std::fs::write(
                self.root(&format!("opt/dcelocal/var/security/creds/{c}")),
                c,
            )
            .unwrap();
        }
    }

    /// Makes ROOT/etc/dce-KIND/NAME exist (`fail`, `block`) or not.
    fn flag(&self, kind: &str, name: &str, on: bool) {
        let f = self.root(&format!("etc/dce-{kind}/{name}"));
        if on {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&f);
        }
    }

    /// The log lines: (program, rest).
    fn log(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.root("var/log/dce.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (name, rest) = l.split_once(' ').unwrap_or((l, ""));
                (name.to_string(), rest.to_string())
            })
            .collect()
    }

    /// The programs that ran, in order.
    fn ran(&self) -> Vec<String> {
        self.log().into_iter().map(|(n, _)| n).collect()
    }

    fn agent(&self) -> PathBuf {
        self.path("ocf/tenet-package")
    }

    /// The agent's OCF parameters and environment.
    fn env(&self, interval_ms: u32) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
            ("OCF_ROOT", "/usr/lib/ocf".to_string()),
            ("OCF_RESOURCE_INSTANCE", "dce-pkg".to_string()),
            ("OCF_RESKEY_package", "dce".to_string()),
            (
                "OCF_RESKEY_binary",
                binary("tenet-agent").display().to_string(),
            ),
            ("OCF_RESKEY_policy", self.path("tree").display().to_string()),
            ("OCF_RESKEY_root", self.path("root").display().to_string()),
            (
                "OCF_RESKEY_state_dir",
                self.path("state").display().to_string(),
            ),
            ("OCF_RESKEY_CRM_meta_interval", interval_ms.to_string()),
            ("HA_RSCTMP", self.path("rsctmp").display().to_string()),
        ]
    }
}

fn exit_reasons(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("ocf-exit-reason:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn ocf_tester_passes_on_the_package_agent_with_a_real_policy() {
    if !have_tools(
        "ocf_tester_passes_on_the_package_agent_with_a_real_policy",
        &["ocf-tester", "xmllint"],
    ) {
        return;
    }
    let sb = PackageSandbox::new();
    let mut cmd = Command::new(tenet_tests::ha::which("ocf-tester").unwrap());
    cmd.args(["-v", "-n", "dce-pkg"]);
    for (k, v) in sb.env(10_000) {
        if let Some(param) = k.strip_prefix("OCF_RESKEY_")
            && param != "CRM_meta_interval"
        {
            cmd.arg("-o").arg(format!("{param}={v}"));
        }
    }
    // With watch=true the agent also keeps `tenet-agent watch dce` running.
    let out = cmd
        .args(["-o", "watch=true"])
        .arg(sb.agent())
        .env("HA_RSCTMP", sb.path("rsctmp"))
        .stdin(Stdio::null())
        .output_busy()
        .unwrap();
    let mut pids = Pids::default();
    let watch_pid = sb.path("rsctmp/tenet-package-dce-pkg.watch.pid");
    if let Ok(p) = std::fs::read_to_string(&watch_pid) {
        pids.push(p.trim().parse().unwrap());
    }
    assert_eq!(code(&out), Some(0), "ocf-tester:\n{}", text(&out));
    assert!(text(&out).contains("passed all tests"), "{}", text(&out));
    // ocf-tester starts twice (the second on a started package), stops twice (the
    // second on a stopped one), with a start and stop in between: the plans ran
    // exactly for the two real starts and stops, each strictly in order, and the stale
    // files were gone before start.dce ran.
    let cycle = ["start.dce", "start.dfs", "stop.dfs", "stop.dce"];
    assert_eq!(sb.ran(), [cycle, cycle].concat(), "{:?}", sb.log());
    let first = &sb.log()[0].1;
    assert!(first.contains("ep=absent creds=0 rc=0"), "{first}");
    assert!(!watch_pid.exists(), "stop leaves no watch process behind");
    // Every event ran to its end: no event id is left for a retry.
    let left: Vec<_> = std::fs::read_dir(sb.path("rsctmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".id"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_package_agent_maps_outcomes_to_ocf_codes() {
    let sb = PackageSandbox::new();
    let agent = sb.agent();
    let env = sb.env(10_000);
    let probe = sb.env(0);
    assert_eq!(code(&run_env(&agent, &["validate-all"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(7));
    assert_eq!(code(&run_env(&agent, &["monitor"], &probe)), Some(7));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    let out = run_env(
        &agent,
        &["validate-all"],
        &with(env.clone(), "OCF_RESKEY_package", ""),
    );
    assert_eq!(code(&out), Some(6), "{}", text(&out));
    assert!(!exit_reasons(&out).is_empty(), "{}", text(&out));
    let missing = with(env.clone(), "OCF_RESKEY_binary", "/nonexistent/tenet-agent");
    assert_eq!(code(&run_env(&agent, &["validate-all"], &missing)), Some(5));
    assert_eq!(code(&run_env(&agent, &["start"], &missing)), Some(5));
    let probe_missing = with(missing.clone(), "OCF_RESKEY_CRM_meta_interval", "0");
    assert_eq!(
        code(&run_env(&agent, &["monitor"], &probe_missing)),
        Some(7)
    );
    assert_eq!(code(&run_env(&agent, &["monitor"], &missing)), Some(5));
    let no_tree = with(env.clone(), "OCF_RESKEY_policy", "/nonexistent/tree");
    assert_eq!(code(&run_env(&agent, &["validate-all"], &no_tree)), Some(5));
    // A package the policy does not know: a misconfigured resource, nothing to stop.
    let nfs = with(env.clone(), "OCF_RESKEY_package", "nfs");
    let out = run_env(&agent, &["start"], &nfs);
    assert_eq!(code(&out), Some(6), "{}", text(&out));
    assert_eq!(
        exit_reasons(&out),
        ["package nfs is not in the tenet policy"],
        "{}",
        text(&out)
    );
    assert_eq!(code(&run_env(&agent, &["monitor"], &nfs)), Some(7));
    // A policy tree that does not load: 6, with the reason.
    std::fs::write(sb.path("tree/broken.toml"), "[[plan]]\nname = 3\n").unwrap();
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(6), "{}", text(&out));
    assert!(!exit_reasons(&out).is_empty(), "{}", text(&out));
    assert!(sb.ran().is_empty(), "{:?}", sb.log());
    assert_eq!(code(&run_env(&agent, &["bogus"], &env)), Some(3));
}

#[test]
fn a_failed_step_fails_the_start_and_names_the_step() {
    let sb = PackageSandbox::new();
    let agent = sb.agent();
    let env = sb.env(10_000);
    sb.flag("fail", "start.dce", true);
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let reasons = exit_reasons(&out);
    assert!(
        reasons.iter().any(|r| r.starts_with(
            "package-start dce failed at step 2 `start.dce` of plan dce-start: exited with status 3"
        )),
        "{}",
        text(&out)
    );
    // The plan stopped at the failed step: start.dfs never ran.
    assert_eq!(sb.ran(), ["start.dce"], "{:?}", sb.log());
    assert!(sb.log()[0].1.contains("ep=absent creds=0 rc=3"));
    // Half started: monitor says failed; the cluster's stop runs the stop plan.
    let out = run_env(&agent, &["monitor"], &env);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    assert_eq!(sb.ran(), ["start.dce", "stop.dfs", "stop.dce"]);
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(7));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    // Repaired: the next start is a new event (not a replay of the failure) and runs.
    sb.flag("fail", "start.dce", false);
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(
        sb.ran(),
        [
            "start.dce",
            "stop.dfs",
            "stop.dce",
            "start.dce",
            "start.dfs"
        ]
    );
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
}

/// The parent PID of `pid` (from /proc).
fn parent(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid ...
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_start_whose_agent_was_killed_is_resumed_only_with_resume_true() {
    let sb = PackageSandbox::new();
    let agent = sb.agent();
    let env = sb.env(10_000);
    let mut pids = Pids::default();
    sb.flag("block", "start.dce", true);
    let mut start = Command::new(&agent)
        .arg("start")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_busy()
        .unwrap();
    pids.push(start.id());
    // start.dce blocks; the agent running it is its parent.
    let step_pid: u32 = wait_for("start.dce to block", DEADLINE, || {
        std::fs::read_to_string(sb.root("var/run/start.dce.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    pids.push(step_pid);
    let agent_pid = parent(step_pid);
    pids.push(agent_pid);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{agent_pid}/comm"))
            .unwrap()
            .trim(),
        "tenet-agent"
    );
    // The step 1 already ran: the stale files are gone.
    assert!(!sb.root("opt/dcelocal/var/dced/Ep.db").exists());
    kill(agent_pid, "KILL");
    kill(step_pid, "KILL");
    let status = wait_exit(&mut start);
    let out = start.wait_with_output().unwrap();
    assert_eq!(status, Some(1), "{}", text(&out));
    assert!(!exit_reasons(&out).is_empty(), "{}", text(&out));
    let id_file = sb.path("rsctmp/tenet-package-dce-pkg.package-start.id");
    let id = std::fs::read_to_string(&id_file)
        .expect("the event id is kept for the retry")
        .trim()
        .to_string();
    assert!(sb.ran().is_empty(), "{:?}", sb.log());

    // A new Ep.db appears: were step 1 run again, it would go.
    sb.seed();
    sb.flag("block", "start.dce", false);
    // By default (resume=false) the retry refuses: the exit reason names the
    // interrupted step, the id and both ways on; nothing runs, the id stays.
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert_eq!(
        exit_reasons(&out),
        [format!(
            "package-start dce interrupted at step 2 `start.dce` of plan dce-start (id {id}): \
             set resume=true for the next start, or run tenet-agent event package-start dce \
             --id {id} --resume"
        )],
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("package-start dce --id {id} --resume --policy")),
        "the log has the whole command: {}",
        text(&out)
    );
    assert!(sb.ran().is_empty(), "{:?}", sb.log());
    assert!(sb.root("opt/dcelocal/var/dced/Ep.db").exists());
    assert_eq!(std::fs::read_to_string(&id_file).unwrap().trim(), id);
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(1));
    let out = run_env(&agent, &["start"], &env);
    assert_eq!(code(&out), Some(1), "refused again: {}", text(&out));

    // resume=true for the next start: it continues the same event.
    let resume = with(env.clone(), "OCF_RESKEY_resume", "true");
    let out = run_env(&agent, &["start"], &resume);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("resuming"),
        "the retry resumed the same event: {}",
        text(&out)
    );
    assert!(
        sb.root("opt/dcelocal/var/dced/Ep.db").exists(),
        "the finished step 1 ran again: {}",
        text(&out)
    );
    // The interrupted step and the rest ran, once each.
    assert_eq!(sb.ran(), ["start.dce", "start.dfs"], "{:?}", sb.log());
    assert!(
        !sb.path("rsctmp/tenet-package-dce-pkg.package-start.id")
            .exists()
    );
    assert_eq!(code(&run_env(&agent, &["monitor"], &env)), Some(0));
    assert_eq!(code(&run_env(&agent, &["start"], &env)), Some(0));
    assert_eq!(sb.ran(), ["start.dce", "start.dfs"]);
    assert_eq!(code(&run_env(&agent, &["stop"], &env)), Some(0));
    assert_eq!(sb.ran(), ["start.dce", "start.dfs", "stop.dfs", "stop.dce"]);
}

/// What Serviceguard gives an external script: SG_* and the package's PEV_* variables.
fn sg_env(s: &Setup, policyd: &Path, config: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SG_PACKAGE", "tenet-policyd".to_string()),
        ("SG_PACKAGE_NAME", "tenet-policyd".to_string()),
        ("SG_NODE", "node1".to_string()),
        ("PEV_TENET_POLICYD", policyd.display().to_string()),
        ("PEV_TENET_CONFIG", config.display().to_string()),
        ("PEV_TENET_BUNDLE", s.bundle.display().to_string()),
    ]
}

/// The next line the service command prints on stdout (`serving serial N` once a status
/// check of its own saw the daemon serving), read by a thread that drains its stdout
/// until it exits; `None` if it exited without one.
fn first_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(line) => Some(line),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the service command neither printed nor exited within {DEADLINE:?}")
        }
    }
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let status = wait_for("the service command to exit", DEADLINE, || {
        child.try_wait().unwrap()
    });
    status.code()
}

#[test]
fn the_serviceguard_external_script_and_service_command_follow_the_contract() {
    let mut s = Setup::new();
    let script = packaging().join("serviceguard/tenet-policyd.sh");
    let service = packaging().join("serviceguard/tenet-policyd-service.sh");
    let policyd = binary("tenet-policyd");
    let env = sg_env(&s, &policyd, &s.config);

    let out = run_env(&script, &["validate"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    // Halting a package that never ran here: 0.
    assert_eq!(code(&run_env(&script, &["stop"], &env)), Some(0));

    let out = run_env(&script, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0), "serving when start returns");
    assert_eq!(code(&run_env(&script, &["start"], &env)), Some(0));

    // The service command: foreground while serving, exits non-zero when serving stops.
    let config = s.config.clone();
    let start_service = || {
        Command::new(&service)
            .arg(&config)
            .arg(&policyd)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn_busy()
            .unwrap()
    };
    let mut svc = start_service();
    s.pids.push(svc.id());
    // The service's own status check saw the daemon serving, and it goes on running.
    assert_eq!(first_line(&mut svc).as_deref(), Some("serving serial 1"));
    assert!(
        svc.try_wait().unwrap().is_none(),
        "the service exited while serving"
    );
    let out = run_env(&script, &["stop"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(wait_exit(&mut svc), Some(7));
    assert_eq!(s.status(), Some(7), "the listener stays after halt");
    assert_eq!(code(&run_env(&script, &["stop"], &env)), Some(0));

    // The listener dies while the package runs: the service exits 1.
    assert_eq!(code(&run_env(&script, &["start"], &env)), Some(0));
    let mut svc = start_service();
    s.pids.push(svc.id());
    assert_eq!(first_line(&mut svc).as_deref(), Some("serving serial 1"));
    s.kill_listener();
    assert_eq!(wait_exit(&mut svc), Some(1));
    assert_eq!(code(&run_env(&script, &["stop"], &env)), Some(0));

    // Failures: no binary here -> 2 (another node may have it); invalid configuration
    // -> validate 1, start 1 (same everywhere; do not bounce the package).
    let missing = sg_env(&s, Path::new("/nonexistent/tenet-policyd"), &s.config);
    assert_eq!(code(&run_env(&script, &["start"], &missing)), Some(2));
    assert_eq!(code(&run_env(&script, &["validate"], &missing)), Some(1));
    assert_eq!(code(&run_env(&script, &["stop"], &missing)), Some(0));
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "member = \"alpha\"\n").unwrap();
    let bad_env = sg_env(&s, &policyd, &bad);
    assert_eq!(code(&run_env(&script, &["validate"], &bad_env)), Some(1));
    assert_eq!(code(&run_env(&script, &["start"], &bad_env)), Some(1));
    assert_eq!(code(&run_env(&script, &[], &env)), Some(1));
}

#[test]
fn the_powerha_scripts_work_with_no_arguments_and_no_environment() {
    let mut s = Setup::new();
    let dir = s.install(
        "powerha",
        &[
            "tenet-policyd-start",
            "tenet-policyd-stop",
            "tenet-policyd-monitor",
        ],
        &s.bundle.clone(),
    );
    let start = dir.join("tenet-policyd-start");
    let stop = dir.join("tenet-policyd-stop");
    let monitor = dir.join("tenet-policyd-monitor");

    assert_ne!(code(&run_env(&monitor, &[], &[])), Some(0));
    assert_eq!(
        code(&run_env(&stop, &[], &[])),
        Some(0),
        "stop of a stopped application"
    );
    let out = run_env(&start, &[], &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0), "serving when start returns");
    assert_eq!(code(&run_env(&monitor, &[], &[])), Some(0));
    assert_eq!(code(&run_env(&start, &[], &[])), Some(0));
    let out = run_env(&stop, &[], &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(7));
    assert_ne!(code(&run_env(&monitor, &[], &[])), Some(0));
    assert_eq!(code(&run_env(&stop, &[], &[])), Some(0));

    // The listener dies: the monitor fails, cleanup (stop) succeeds, restart works.
    assert_eq!(code(&run_env(&start, &[], &[])), Some(0));
    s.kill_listener();
    assert_ne!(code(&run_env(&monitor, &[], &[])), Some(0));
    assert_eq!(code(&run_env(&stop, &[], &[])), Some(0));
    assert_eq!(code(&run_env(&start, &[], &[])), Some(0));
    assert_eq!(code(&run_env(&monitor, &[], &[])), Some(0));

    // With master-move on and an agent, a start runs this member's master-move plans.
    assert_eq!(code(&run_env(&stop, &[], &[])), Some(0));
    let tree = s.path("mm-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("cluster.toml"), MASTER_MOVE_POLICY).unwrap();
    let root = s.path("mm-root");
    std::fs::create_dir_all(&root).unwrap();
    let conf = std::fs::read_to_string(dir.join("tenet-ha.conf")).unwrap();
    std::fs::write(
        dir.join("tenet-ha.conf"),
        format!(
            "{conf}TENET_MASTER_MOVE=true\nTENET_AGENT={}\nTENET_AGENT_CONFIG=\nTENET_AGENT_ARGS=\"--policy {} --root {} --state-dir {}\"\n",
            binary("tenet-agent").display(),
            tree.display(),
            root.display(),
            s.path("mm-state").display()
        ),
    )
    .unwrap();
    let out = run_env(&start, &[], &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/master-moved")).unwrap(),
        "the policy server moved here\n",
        "{}",
        text(&out)
    );
    assert_eq!(code(&run_env(&stop, &[], &[])), Some(0));
}

impl PackageSandbox {
    /// The PowerHA node_up pre- and post-event scripts in a directory of their own,
    /// with a `tenet-ha.conf` that makes this sandbox PowerHA node `member` (the tenet
    /// member of the same name), holding the packages `holds`.
    fn powerha(&self, member: &str, holds: &str) -> PathBuf {
        let to = self.path("powerha");
        std::fs::create_dir_all(&to).unwrap();
        for n in ["tenet-node-up-pre", "tenet-node-up-post"] {
            std::fs::copy(packaging().join("powerha").join(n), to.join(n)).unwrap();
        }
        std::fs::write(
            to.join("tenet-ha.conf"),
            format!(
                "TENET_AGENT={}\nTENET_AGENT_CONFIG=\nTENET_AGENT_ARGS=\"--policy {} --root {} \
                 --state-dir {} --fact member={member} --fact holds={holds}\"\n\
                 TENET_RUN_DIR={}\nTENET_NODE={member}\n",
                binary("tenet-agent").display(),
                self.path("tree").display(),
                self.path("root").display(),
                self.path("state").display(),
                self.path("run").display(),
            ),
        )
        .unwrap();
        to
    }

    /// The event ids the PowerHA scripts keep for unfinished events.
    fn kept_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.path("run"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".id"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn the_powerha_node_up_pair_runs_the_stop_side_on_the_standby_and_the_start_side_on_the_owner() {
    // alpha owns dce (cascading) and returns; beta, the standby, holds it until its
    // pre-event has run; alpha holds it from its post-event on.
    let owner = PackageSandbox::new();
    let standby = PackageSandbox::new();
    let on_owner = owner.powerha("alpha", "dce");
    let on_standby = standby.powerha("beta", "dce");
    let pre = |dir: &Path, args: &[&str]| run_env(&dir.join("tenet-node-up-pre"), args, &[]);
    let post = |dir: &Path, args: &[&str]| run_env(&dir.join("tenet-node-up-post"), args, &[]);

    // No arguments (and no environment): usage, nothing runs.
    assert_eq!(code(&pre(&on_standby, &[])), Some(2));
    assert_eq!(code(&post(&on_owner, &[])), Some(2));
    assert_eq!(code(&post(&on_owner, &["node_up", "0"])), Some(2));

    // node_up alpha, in PowerHA's order: every node's pre-event (the standby stops the
    // package, the returning owner does nothing yet), then the post-events (the owner
    // starts it, the standby does nothing).
    let out = pre(&on_owner, &["node_up", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(owner.ran().is_empty(), "{:?}", owner.log());
    let out = pre(&on_standby, &["node_up", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(
        standby.ran(),
        ["stop.dfs", "stop.dce"],
        "{:?}",
        standby.log()
    );
    let out = post(&on_standby, &["node_up", "0", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(standby.ran(), ["stop.dfs", "stop.dce"]);
    assert!(
        owner.ran().is_empty(),
        "the owner started before its post-event"
    );
    let out = post(&on_owner, &["node_up", "0", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(owner.ran(), ["start.dce", "start.dfs"], "{:?}", owner.log());
    assert!(owner.log()[0].1.contains("ep=absent creds=0 rc=0"));
    // Both ran to their end: no id kept; the journals name the node_up.
    assert!(owner.kept_ids().is_empty() && standby.kept_ids().is_empty());
    let journals: Vec<String> = std::fs::read_dir(owner.path("state/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        journals.len() == 1 && journals[0].starts_with("powerha-node_up-alpha-post-"),
        "{journals:?}"
    );

    // A node that owns nothing returns: nothing anywhere.
    assert_eq!(code(&pre(&on_standby, &["node_up", "beta"])), Some(0));
    assert_eq!(code(&post(&on_standby, &["node_up", "0", "beta"])), Some(0));
    assert_eq!(standby.ran(), ["stop.dfs", "stop.dce"]);

    // node_up itself failed: the owner starts nothing.
    let out = post(&on_owner, &["node_up", "1", "alpha"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert_eq!(owner.ran(), ["start.dce", "start.dfs"]);

    // A failed step fails the event with tenet's code, naming the step; the id is
    // dropped (the event ran to its end), so the next node_up is a new event.
    standby.flag("fail", "stop.dfs", true);
    let out = pre(&on_standby, &["node_up", "alpha"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("`stop.dfs`"), "{}", text(&out));
    assert!(standby.kept_ids().is_empty());
    standby.flag("fail", "stop.dfs", false);
    let out = pre(&on_standby, &["node_up", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(
        standby.ran(),
        ["stop.dfs", "stop.dce", "stop.dfs", "stop.dfs", "stop.dce"]
    );

    // A broken policy: tenet's code 3, and the id is kept for the retry.
    std::fs::write(owner.path("tree/broken.toml"), "[[plan]]\nname = 3\n").unwrap();
    let out = post(&on_owner, &["node_up", "0", "alpha"]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    assert_eq!(owner.kept_ids().len(), 1, "{:?}", owner.kept_ids());
}

#[test]
fn the_keepalived_notify_script_follows_each_state_and_the_check_reports_health() {
    let mut s = Setup::new();
    let dir = s.install(
        "keepalived",
        &["tenet-policyd-notify", "tenet-policyd-check"],
        &s.bundle.clone(),
    );
    let notify = |state: &str| {
        run_env(
            &dir.join("tenet-policyd-notify"),
            &["INSTANCE", "tenet", state, "150"],
            &[],
        )
    };
    let check = || code(&run_env(&dir.join("tenet-policyd-check"), &["tenet"], &[]));

    // BACKUP first (keepalived starts in BACKUP): nothing runs, nothing to stop.
    assert_eq!(code(&notify("BACKUP")), Some(0));
    assert_eq!(check(), Some(1), "no listener: unhealthy");
    let out = notify("MASTER");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0), "serving when notify returns");
    assert_eq!(check(), Some(0));
    for state in ["BACKUP", "FAULT", "STOP", "DELETED"] {
        assert_eq!(code(&notify("MASTER")), Some(0));
        assert_eq!(s.status(), Some(0));
        let out = notify(state);
        assert_eq!(code(&out), Some(0), "{state}: {}", text(&out));
        assert_eq!(s.status(), Some(7), "{state}: demoted, listener up");
        assert_eq!(check(), Some(0), "{state}: a healthy backup");
    }

    // A MASTER that cannot serve fails its check until it has given the address up.
    std::fs::write(
        dir.join("tenet-ha.conf"),
        std::fs::read_to_string(dir.join("tenet-ha.conf"))
            .unwrap()
            .replace(s.bundle.to_str().unwrap(), "/nonexistent/bundle"),
    )
    .unwrap();
    assert_eq!(code(&notify("MASTER")), Some(1));
    assert_eq!(check(), Some(1));
    assert_eq!(code(&notify("FAULT")), Some(0));
    assert_eq!(check(), Some(0));

    // With master-move on and an agent: MASTER runs this member's master-move plans.
    let tree = s.path("mm-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("cluster.toml"), MASTER_MOVE_POLICY).unwrap();
    let root = s.path("mm-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        dir.join("tenet-ha.conf"),
        format!(
            "{}TENET_BUNDLE={}\nTENET_MASTER_MOVE=true\nTENET_AGENT={}\nTENET_AGENT_CONFIG=\nTENET_AGENT_ARGS=\"--policy {} --root {} --state-dir {}\"\n",
            std::fs::read_to_string(dir.join("tenet-ha.conf")).unwrap(),
            s.bundle.display(),
            binary("tenet-agent").display(),
            tree.display(),
            root.display(),
            s.path("mm-state").display()
        ),
    )
    .unwrap();
    let out = notify("MASTER");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(s.status(), Some(0));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/master-moved")).unwrap(),
        "the policy server moved here\n"
    );
    assert_eq!(code(&notify("BACKUP")), Some(0));

    // The listener dies: unhealthy.
    s.kill_listener();
    assert_eq!(check(), Some(1));
    assert_eq!(code(&notify("BOGUS")), Some(2));
    assert_eq!(
        code(&run_env(
            &dir.join("tenet-policyd-notify"),
            &["INSTANCE"],
            &[]
        )),
        Some(2)
    );
}

#[test]
fn racing_keepalived_notifies_end_in_the_last_transition() {
    let mut s = Setup::new();
    let dir = s.install(
        "keepalived",
        &["tenet-policyd-notify", "tenet-policyd-check"],
        &s.bundle.clone(),
    );
    let script = dir.join("tenet-policyd-notify");
    let recorded = s.path("run/keepalived-tenet.state");
    let notify = |state: &str| {
        Command::new(&script)
            .args(["INSTANCE", "tenet", state, "150"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn_busy()
            .unwrap()
    };
    let check = || code(&run_env(&dir.join("tenet-policyd-check"), &["tenet"], &[]));
    let mut first = notify("MASTER");
    s.pids.push(first.id());
    assert_eq!(wait_exit(&mut first), Some(0));
    assert_eq!(s.status(), Some(0));
    // keepalived starts a notify without waiting for the one before: a flap starts
    // both nearly together. Whichever gets going first, the later transition wins;
    // the other exits 0 (superseded) or acts first.
    for round in 0..4 {
        for (before, last, serving) in [("MASTER", "BACKUP", 7), ("BACKUP", "MASTER", 0)] {
            let mut a = notify(before);
            let mut b = notify(last);
            s.pids.push(a.id());
            s.pids.push(b.id());
            assert_eq!(wait_exit(&mut a), Some(0), "round {round}: {before}");
            assert_eq!(wait_exit(&mut b), Some(0), "round {round}: {last}");
            assert_eq!(
                s.status(),
                Some(serving),
                "round {round}: {before} then {last}"
            );
            assert_eq!(
                std::fs::read_to_string(&recorded).unwrap().trim(),
                last,
                "round {round}"
            );
            assert_eq!(check(), Some(0), "round {round}: {last} healthy");
        }
    }
}

/// Copies the directory `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The example policy `policies/examples/NAME`, unchanged.
fn example_policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/examples")
        .join(name)
}

impl PackageSandbox {
    /// A sandbox whose policy tree is the example `name` instead of the HA tests'.
    fn with_example(name: &str) -> PackageSandbox {
        let sb = PackageSandbox::new();
        std::fs::remove_dir_all(sb.path("tree")).unwrap();
        copy_tree(&example_policy(name), &sb.path("tree"));
        sb
    }

    /// The PowerHA scripts `names` in a directory of their own, with a
    /// `tenet-ha.conf` that runs this sandbox's agent as member `member` holding `holds`.
    fn powerha_scripts(&self, names: &[&str], member: &str, holds: &str) -> PathBuf {
        let to = self.powerha(member, holds);
        for n in names {
            std::fs::copy(packaging().join("powerha").join(n), to.join(n)).unwrap();
        }
        to
    }

    /// The journals of the events run in this sandbox.
    fn journals(&self) -> Vec<String> {
        let mut j: Vec<String> = std::fs::read_dir(self.path("state/events"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        j.sort();
        j
    }
}

#[test]
fn the_powerha_dce_application_controller_runs_the_example_plans_once_per_start() {
    let sb = PackageSandbox::with_example("dce-cluster");
    let dir = sb.powerha_scripts(
        &["tenet-dce-start", "tenet-dce-stop", "tenet-dce-monitor"],
        "alpha",
        "dce",
    );
    // PowerHA: no arguments, no environment.
    let run = |name: &str| run_env(&dir.join(name), &[], &[]);

    assert_eq!(
        code(&run("tenet-dce-monitor")),
        Some(1),
        "down before a start"
    );
    let out = run("tenet-dce-start");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(sb.ran(), ["start.dce", "start.dfs"], "{:?}", sb.log());
    // The example's first step removed the departed member's endpoint map first.
    assert!(
        sb.log()[0].1.contains("ep=absent creds=0 rc=0"),
        "{:?}",
        sb.log()
    );
    assert!(!sb.root("opt/dcelocal/var/dced/Ep.db").exists());
    assert_eq!(code(&run("tenet-dce-monitor")), Some(0));
    let journals = sb.journals();
    assert!(
        journals.len() == 1 && journals[0].starts_with("powerha-dce-start-"),
        "{journals:?}"
    );

    // PowerHA runs the start again: the same event id, replayed; nothing runs.
    sb.seed();
    let out = run("tenet-dce-start");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("nothing is run again"),
        "{}",
        text(&out)
    );
    assert_eq!(sb.ran(), ["start.dce", "start.dfs"], "{:?}", sb.log());
    assert!(sb.root("opt/dcelocal/var/dced/Ep.db").exists());
    assert_eq!(sb.journals(), journals);

    // The stop runs the stop plans, DFS first; the monitor reports the package down.
    let out = run("tenet-dce-stop");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(sb.ran(), ["start.dce", "start.dfs", "stop.dfs", "stop.dce"]);
    assert_eq!(code(&run("tenet-dce-monitor")), Some(1));
    assert!(sb.kept_ids().is_empty(), "{:?}", sb.kept_ids());

    // The next start is a new event.
    let out = run("tenet-dce-start");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(sb.ran().len(), 6, "{:?}", sb.log());
    assert_eq!(sb.journals().len(), 3, "{:?}", sb.journals());
    assert_eq!(code(&run("tenet-dce-stop")), Some(0));

    // A failed step fails the start (tenet's code, the step named), the monitor says
    // down, and the id is dropped: the start after the fix is a new event.
    sb.flag("fail", "start.dfs", true);
    let out = run("tenet-dce-start");
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("start.dfs"), "{}", text(&out));
    assert_eq!(code(&run("tenet-dce-monitor")), Some(1));
    assert!(
        !sb.kept_ids().iter().any(|i| i.contains("-start")),
        "{:?}",
        sb.kept_ids()
    );
    sb.flag("fail", "start.dfs", false);
    let before = sb.ran().len();
    let out = run("tenet-dce-start");
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(sb.ran()[before..], ["start.dce", "start.dfs"]);
    assert_eq!(code(&run("tenet-dce-monitor")), Some(0));
}

#[test]
fn a_powerha_dce_start_rerun_after_its_agent_was_killed_runs_no_finished_step_again() {
    let sb = PackageSandbox::with_example("dce-cluster");
    let dir = sb.powerha_scripts(&["tenet-dce-start", "tenet-dce-monitor"], "alpha", "dce");
    let mut pids = Pids::default();
    sb.flag("block", "start.dfs", true);
    let mut start = Command::new(dir.join("tenet-dce-start"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_busy()
        .unwrap();
    pids.push(start.id());
    let step_pid: u32 = wait_for("start.dfs to block", DEADLINE, || {
        std::fs::read_to_string(sb.root("var/run/start.dfs.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    pids.push(step_pid);
    let agent_pid = parent(step_pid);
    pids.push(agent_pid);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{agent_pid}/comm"))
            .unwrap()
            .trim(),
        "tenet-agent"
    );
    kill(agent_pid, "KILL");
    kill(step_pid, "KILL");
    let status = wait_exit(&mut start);
    let out = start.wait_with_output().unwrap();
    assert_ne!(status, Some(0), "{}", text(&out));
    assert_eq!(sb.ran(), ["start.dce"], "{:?}", sb.log());
    assert_eq!(
        code(&run_env(&dir.join("tenet-dce-monitor"), &[], &[])),
        Some(1)
    );
    assert_eq!(sb.kept_ids().len(), 1, "{:?}", sb.kept_ids());

    // PowerHA starts it again: the same event continues from start.dfs; the finished
    // steps (the stale files' removal, start.dce) do not run again.
    sb.seed();
    sb.flag("block", "start.dfs", false);
    let out = run_env(&dir.join("tenet-dce-start"), &[], &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("interrupted; continuing"),
        "{}",
        text(&out)
    );
    assert_eq!(sb.ran(), ["start.dce", "start.dfs"], "{:?}", sb.log());
    assert!(sb.root("opt/dcelocal/var/dced/Ep.db").exists());
    assert_eq!(sb.journals().len(), 1, "{:?}", sb.journals());
    assert_eq!(
        code(&run_env(&dir.join("tenet-dce-monitor"), &[], &[])),
        Some(0)
    );
}

/// A stand-in for systemctl, pkill, pgrep and sm-notify in the NFS sandbox root: logs
/// `NAME ARGS` to ROOT/var/log/nfs.log; ROOT/etc/nfs-fail/NAME makes it fail (exit 3);
/// pgrep finds lockd when ROOT/etc/nfs-lockd exists; ROOT/etc/nfs-block/NAME makes it
/// write ROOT/var/run/NAME.pid and block until killed, logging nothing.
const FAKE_NFS: &str = r#"#!/bin/sh
name=${0##*/}
r=${TENET_ROOT:?TENET_ROOT is not set}
if [ -e "$r/etc/nfs-block/$name" ]; then
	mkdir -p "$r/var/run"
	echo $$ >"$r/var/run/$name.pid"
	exec sleep 600
fi
mkdir -p "$r/var/log"
echo "$name $*" >>"$r/var/log/nfs.log"
if [ -e "$r/etc/nfs-fail/$name" ]; then
	echo "$name: failing as asked" >&2
	exit 3
fi
[ "$name" = pgrep ] && { [ -e "$r/etc/nfs-lockd" ] || exit 1; }
exit 0
"#;

/// The NFS example's policy and a sandbox root with fake NFS programs, the package's
/// holding directory and a Serviceguard external script with a fake utils.sh.
struct NfsSandbox {
    sb: PackageSandbox,
}

impl NfsSandbox {
    fn new() -> NfsSandbox {
        let sb = PackageSandbox::with_example("nfs-cluster");
        for (dir, name) in [
            ("usr/bin", "systemctl"),
            ("usr/bin", "pkill"),
            ("usr/bin", "pgrep"),
            ("usr/sbin", "sm-notify"),
        ] {
            let f = sb.root(&format!("{dir}/{name}"));
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, FAKE_NFS).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The entries the member that left put in the holding directory.
        std::fs::create_dir_all(sb.root("export/nfs/.sm")).unwrap();
        std::fs::create_dir_all(sb.root("var/lib/nfs/sm")).unwrap();
        std::fs::write(sb.root("export/nfs/.sm/client1"), "client1\n").unwrap();
        std::fs::create_dir_all(sb.root("etc")).unwrap();
        std::fs::write(sb.root("etc/nfs-lockd"), "").unwrap();
        let dir = sb.path("serviceguard");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            packaging().join("serviceguard/tenet-nfs.sh"),
            dir.join("tenet-nfs.sh"),
        )
        .unwrap();
        // Serviceguard's utils.sh, as far as the script uses it.
        std::fs::write(
            dir.join("utils.sh"),
            format!(
                "sg_source_pkg_env() {{ :; }}\nsg_log() {{ shift; echo \"$*\" >>{}; }}\n",
                sb.path("package.log").display()
            ),
        )
        .unwrap();
        NfsSandbox { sb }
    }

    fn script(&self) -> PathBuf {
        self.sb.path("serviceguard/tenet-nfs.sh")
    }

    /// Serviceguard's environment for the package on node `red`: SG_* and PEV_* only.
    fn env(&self, sg_utils: bool) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("SG_PACKAGE", "nfs".to_string()),
            ("SG_NODE", "red".to_string()),
            (
                "PEV_TENET_AGENT",
                binary("tenet-agent").display().to_string(),
            ),
            ("PEV_TENET_AGENT_CONFIG", String::new()),
            (
                "PEV_TENET_AGENT_ARGS",
                format!(
                    "--policy {} --root {} --state-dir {} --fact member=red --fact holds=nfs",
                    self.sb.path("tree").display(),
                    self.sb.path("root").display(),
                    self.sb.path("state").display()
                ),
            ),
            (
                "PEV_TENET_RUN_DIR",
                self.sb.path("run").display().to_string(),
            ),
        ];
        if sg_utils {
            env.push((
                "SG_UTILS",
                self.sb.path("serviceguard/utils.sh").display().to_string(),
            ));
        }
        env
    }

    /// The fake programs' calls, in order.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.sb.root("var/log/nfs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn package_log(&self) -> String {
        std::fs::read_to_string(self.sb.path("package.log")).unwrap_or_default()
    }
}

const NFS_START: [&str; 5] = [
    "systemctl start nfs-server.service",
    "pgrep --exact lockd",
    "pkill --signal KILL --exact lockd",
    "systemctl restart rpc-statd.service",
    "sm-notify -f -P /var/lib/nfs -v nfs.example.com",
];
const NFS_STOP: [&str; 1] = ["systemctl stop nfs-server.service"];

#[test]
fn the_serviceguard_nfs_external_script_runs_the_example_plans_once_per_start() {
    let nfs = NfsSandbox::new();
    let sb = &nfs.sb;
    let script = nfs.script();
    let env = nfs.env(true);

    // No entry point: usage, exit 1.
    assert_eq!(code(&run_env(&script, &[], &env)), Some(1));

    // validate (cmcheckconf): the package has start plans here; an unknown one not.
    let out = run_env(&script, &["validate"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        nfs.package_log().contains("nfs-migrate-locks"),
        "{}",
        nfs.package_log()
    );
    let out = run_env(
        &script,
        &["validate"],
        &with(env.clone(), "SG_PACKAGE", "nfs2"),
    );
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(
        nfs.package_log().contains("not in the cluster config"),
        "{}",
        nfs.package_log()
    );
    let missing = with(env.clone(), "PEV_TENET_AGENT", "/nonexistent/tenet-agent");
    assert_eq!(code(&run_env(&script, &["validate"], &missing)), Some(1));
    assert!(
        nfs.calls().is_empty(),
        "validate ran something: {:?}",
        nfs.calls()
    );

    // start: the lock migration in the plan's order, the entries back in place, the
    // notification from the package's name; the output in the package log (sg_log).
    let out = run_env(&script, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}\n{}", text(&out), nfs.package_log());
    assert_eq!(nfs.calls(), NFS_START, "{}", nfs.package_log());
    assert_eq!(
        std::fs::read_to_string(sb.root("var/lib/nfs/sm/client1")).unwrap(),
        "client1\n"
    );
    assert!(
        nfs.package_log().contains("sm-notify"),
        "{}",
        nfs.package_log()
    );
    let journals = sb.journals();
    assert!(
        journals.len() == 1 && journals[0].starts_with("sg-nfs-start-"),
        "{journals:?}"
    );

    // Serviceguard runs the start again on this node: the same id, nothing runs.
    let out = run_env(&script, &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(nfs.calls(), NFS_START);
    assert_eq!(sb.journals(), journals);

    // halt: the last entries to the holding directory (purged to the sm copy), then
    // the NFS daemons stop.
    std::fs::write(sb.root("var/lib/nfs/sm/client2"), "client2\n").unwrap();
    let out = run_env(&script, &["stop"], &env);
    assert_eq!(code(&out), Some(0), "{}\n{}", text(&out), nfs.package_log());
    assert_eq!(nfs.calls()[NFS_START.len()..], NFS_STOP);
    assert_eq!(
        std::fs::read_to_string(sb.root("export/nfs/.sm/client2")).unwrap(),
        "client2\n"
    );
    assert!(sb.kept_ids().is_empty(), "{:?}", sb.kept_ids());

    // Without Serviceguard's utils.sh the messages go to stderr. A failed step fails
    // the start with Serviceguard's 1, the step named; the next start is a new event.
    let plain = nfs.env(false);
    std::fs::create_dir_all(sb.root("etc/nfs-fail")).unwrap();
    std::fs::write(sb.root("etc/nfs-fail/sm-notify"), "").unwrap();
    let out = run_env(&script, &["start"], &plain);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notify clients from the package's name"),
        "{err}"
    );
    assert!(sb.kept_ids().is_empty(), "{:?}", sb.kept_ids());
    std::fs::remove_file(sb.root("etc/nfs-fail/sm-notify")).unwrap();
    let before = nfs.calls().len();
    let out = run_env(&script, &["start"], &plain);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(nfs.calls()[before..], NFS_START);
    assert_eq!(sb.journals().len(), 4, "{:?}", sb.journals());
}

#[test]
fn the_powerha_node_down_post_event_takes_the_package_over_once_on_the_survivor() {
    // alpha, dce's owner, leaves; beta survives and node_down gave it dce's address.
    let owner = PackageSandbox::with_example("dce-cluster");
    let survivor = PackageSandbox::with_example("dce-cluster");
    let idle = PackageSandbox::with_example("dce-cluster");
    let names = [
        "tenet-node-down-post",
        "tenet-dce-start",
        "tenet-dce-monitor",
    ];
    let on_owner = owner.powerha_scripts(&names, "alpha", "");
    let on_survivor = survivor.powerha_scripts(&names, "beta", "dce");
    let on_idle = idle.powerha_scripts(&names, "beta", "");
    // PowerHA: `node_down STATUS NODE [graceful|forced]`, no environment.
    let post = |dir: &Path, args: &[&str]| run_env(&dir.join("tenet-node-down-post"), args, &[]);

    assert_eq!(code(&post(&on_survivor, &[])), Some(2));
    assert_eq!(code(&post(&on_survivor, &["node_down", "0"])), Some(2));

    // node_down itself failed: nothing is taken over.
    let out = post(&on_survivor, &["node_down", "1", "alpha"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(survivor.ran().is_empty(), "{:?}", survivor.log());

    // On the node that left: nothing.
    let out = post(&on_owner, &["node_down", "0", "alpha", "forced"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(owner.ran().is_empty(), "{:?}", owner.log());

    // A graceful node_down took the package offline: the other node holds nothing.
    let out = post(&on_idle, &["node_down", "0", "alpha", "graceful"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(idle.ran().is_empty(), "{:?}", idle.log());

    // The survivor takes dce over: the example's start plan, the stale files first.
    let out = post(&on_survivor, &["node_down", "0", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(
        survivor.ran(),
        ["start.dce", "start.dfs"],
        "{:?}",
        survivor.log()
    );
    assert!(survivor.log()[0].1.contains("ep=absent creds=0 rc=0"));
    assert!(survivor.kept_ids().is_empty(), "{:?}", survivor.kept_ids());
    // The resource group's application controller start on the survivor runs nothing
    // again: dce was started here by the node_down.
    let out = run_env(&on_survivor.join("tenet-dce-start"), &[], &[]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("already started here"),
        "{}",
        text(&out)
    );
    assert_eq!(
        survivor.ran(),
        ["start.dce", "start.dfs"],
        "{:?}",
        survivor.log()
    );
    // Nor does the same node_down reported again.
    let out = post(&on_survivor, &["node_down", "0", "alpha"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(
        survivor.ran(),
        ["start.dce", "start.dfs"],
        "{:?}",
        survivor.log()
    );
}

#[test]
fn a_serviceguard_nfs_start_rerun_after_its_agent_was_killed_runs_no_finished_step_again() {
    let nfs = NfsSandbox::new();
    let sb = &nfs.sb;
    let env = nfs.env(true);
    let mut pids = Pids::default();
    std::fs::create_dir_all(sb.root("etc/nfs-block")).unwrap();
    std::fs::write(sb.root("etc/nfs-block/sm-notify"), "").unwrap();
    let mut start = Command::new(nfs.script())
        .arg("start")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_busy()
        .unwrap();
    pids.push(start.id());
    let step_pid: u32 = wait_for("sm-notify to block", DEADLINE, || {
        std::fs::read_to_string(sb.root("var/run/sm-notify.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    pids.push(step_pid);
    let agent_pid = parent(step_pid);
    pids.push(agent_pid);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{agent_pid}/comm"))
            .unwrap()
            .trim(),
        "tenet-agent"
    );
    kill(agent_pid, "KILL");
    kill(step_pid, "KILL");
    let status = wait_exit(&mut start);
    let out = start.wait_with_output().unwrap();
    assert_eq!(status, Some(1), "{}", text(&out));
    assert_eq!(nfs.calls(), NFS_START[..4], "{}", nfs.package_log());
    assert_eq!(sb.kept_ids().len(), 1, "{:?}", sb.kept_ids());

    // Serviceguard starts the package again here: the same event goes on at
    // sm-notify; the finished steps (the daemons, the entries copied back) do not run
    // again: an entry removed since is not copied back.
    std::fs::remove_file(sb.root("var/lib/nfs/sm/client1")).unwrap();
    std::fs::remove_file(sb.root("etc/nfs-block/sm-notify")).unwrap();
    let out = run_env(&nfs.script(), &["start"], &env);
    assert_eq!(code(&out), Some(0), "{}\n{}", text(&out), nfs.package_log());
    assert!(
        nfs.package_log().contains("interrupted; continuing"),
        "{}",
        nfs.package_log()
    );
    assert_eq!(nfs.calls()[4..], NFS_START[4..], "{:?}", nfs.calls());
    assert!(!sb.root("var/lib/nfs/sm/client1").exists());
    assert_eq!(sb.journals().len(), 1, "{:?}", sb.journals());
}

#[path = "members.rs"]
mod members;
