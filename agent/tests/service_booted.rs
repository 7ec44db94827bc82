//! `[[service]]` against a real, booted systemd: the host's `/usr/lib/systemd/systemd`
//! runs as PID 1 of a throwaway container, and the built `tenet-agent` runs inside
//! it with `--root /`, so the running state (`start`, `stop`) and `service:` notify
//! actions go through a live manager. Every state is read back with `systemctl`
//! inside the container by the test itself, never from the agent's report alone.
//!
//! The container is made with util-linux alone (no `systemd-nspawn`): `unshare`
//! gives it its own PID, mount, UTS, IPC, network and cgroup namespaces (mount
//! propagation private, so nothing it mounts reaches the host), in a fresh cgroup
//! made for the test (`name=systemd` and the cgroup2 `unified` hierarchy on a hybrid
//! host, one cgroup2 directory on a unified one). Its root is a temp directory: the
//! host's `/usr` bound read-only (with a writable `/usr/local` of the test's, where
//! the test units go), `bin`, `sbin`, `lib`, `lib64` linking into it, an
//! `/etc` of its own (os-release, machine-id, passwd, group; getty and logind masked),
//! `/proc` with `/proc/sys` read-only, `/sys` read-only, a tmpfs `/dev` with only the
//! plain devices and a new devpts (its console a file, which the boot log lands in),
//! and tmpfs `/run` and `/tmp`. systemd is started by `pivot_root` into it and
//! `setpriv`, with `container=` set and about the bounding set systemd-nspawn gives (no
//! `CAP_SYS_MODULE`, `CAP_SYS_RAWIO`, `CAP_SYS_TIME`...), so it neither loads kernel
//! modules nor writes the host's sysctls. The agent binary and the policy tree are
//! bound read-only into it; commands run inside with `nsenter` into every namespace
//! and its root. It is running within about half a second; each test takes about
//! 1.5 s. Only the hybrid cgroup layout (Debian 12 on a cgroup v1 host) has been
//! run; the unified and legacy branches follow the same steps.
//!
//! Teardown kills the container's PID 1 by PID (the kernel then kills every process
//! in its PID namespace, and the mounts go with the last of them), reaps `unshare`,
//! and removes the test's cgroup directories. `unshare --kill-child` and
//! `setpriv --pdeathsig` take the container down with the test if the test dies.
//!
//! Needs root, `unshare`, `nsenter`, `setpriv`, `pivot_root` (util-linux), `systemctl` and
//! `/usr/lib/systemd/systemd` (systemd) and a cgroup hierarchy it may create a
//! directory in. Without them the tests are skipped with a printed reason, unless
//! `TENET_REQUIRE_HA=1` (which `.ci/run` sets): then they fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;
use tenet_tests::ha::{ha_required, skip, which};

use crate::util::{AGENT, Report, Run, mkdir, symlink, write};

/// How long the container may take to boot, and any one command inside it.
const LIMIT: Duration = Duration::from_secs(30);

/// The agent binary and the policy tree, inside the container.
const AGENT_INSIDE: &str = "/opt/tenet/tenet-agent";
const POLICY_INSIDE: &str = "/srv/tenet-policy";

/// The test unit: a long-running process whose reload leaves a mark in /run.
const DEMO: &str = "[Unit]\nDescription=tenet test unit\n\
[Service]\nExecStart=/usr/bin/sleep infinity\n\
ExecReload=/usr/bin/touch /run/tenet-demo.reloaded\n\
[Install]\nWantedBy=multi-user.target\n";

/// Makes the container's mounts (in its own namespaces) and execs systemd as its
/// PID 1. Arguments: the root, the agent binary, the policy tree, the console log,
/// the writable directory to mount at `/usr/local`, the cgroup layout (`hybrid`,
/// `legacy` or `unified`) and the test's cgroup name.
const BOOT: &str = r#"
set -eu
root=$1 agent=$2 policy=$3 console=$4 local=$5 layout=$6 cg=$7
case $layout in
  hybrid) cgdirs="/sys/fs/cgroup/systemd/$cg /sys/fs/cgroup/unified/$cg" ;;
  legacy) cgdirs="/sys/fs/cgroup/systemd/$cg" ;;
  unified) cgdirs="/sys/fs/cgroup/$cg" ;;
esac
for d in $cgdirs; do mkdir "$d"; echo $$ > "$d/cgroup.procs"; done
exec setpriv --pdeathsig KILL -- unshare --pid --fork --kill-child --mount --uts --ipc --net --cgroup --propagation private -- sh -euc '
root=$1 agent=$2 policy=$3 console=$4 local=$5 layout=$6
mount --bind "$root" "$root"
mount --bind /usr "$root/usr"
mount -o remount,bind,ro "$root/usr"
mount --bind "$local" "$root/usr/local"
mount --bind "$agent" "$root/opt/tenet/tenet-agent"
mount -o remount,bind,ro "$root/opt/tenet/tenet-agent"
mount --bind "$policy" "$root/srv/tenet-policy"
mount -o remount,bind,ro "$root/srv/tenet-policy"
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro sysfs "$root/sys"
if [ "$layout" = unified ]; then
  mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
else
  mount -t tmpfs -o mode=755 tmpfs "$root/sys/fs/cgroup"
  mkdir "$root/sys/fs/cgroup/systemd"
  mount -t cgroup -o none,name=systemd cgroup "$root/sys/fs/cgroup/systemd"
  if [ "$layout" = hybrid ]; then
    mkdir "$root/sys/fs/cgroup/unified"
    mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup/unified"
  fi
  mount -o remount,bind,ro "$root/sys/fs/cgroup"
fi
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
mknod -m 666 "$root/dev/null" c 1 3
mknod -m 666 "$root/dev/zero" c 1 5
mknod -m 666 "$root/dev/full" c 1 7
mknod -m 666 "$root/dev/random" c 1 8
mknod -m 666 "$root/dev/urandom" c 1 9
mknod -m 666 "$root/dev/tty" c 5 0
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
: > "$root/dev/console"
mount --bind "$console" "$root/dev/console"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
cd "$root"
mkdir oldroot
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot
exec env -i container=tenet-test setpriv --bounding-set -all,+chown,+dac_override,+dac_read_search,+fowner,+fsetid,+ipc_owner,+kill,+lease,+linux_immutable,+mknod,+net_bind_service,+net_broadcast,+net_raw,+setfcap,+setgid,+setpcap,+setuid,+sys_admin,+sys_boot,+sys_chroot,+sys_nice,+sys_ptrace,+sys_resource,+audit_write,+audit_control -- /usr/lib/systemd/systemd --system --log-target=console
' boot "$root" "$agent" "$policy" "$console" "$local" "$layout"
"#;

/// A booted container; dropping it kills it by PID and removes its cgroups.
struct Booted {
    dir: TempDir,
    root: PathBuf,
    policy: PathBuf,
    /// `unshare`, the parent of the container's PID 1.
    unshare: Child,
    /// The container's PID 1 (systemd), as the host numbers it.
    pid1: Option<Pid>,
    /// The cgroup directories made for the container.
    cgroups: Vec<PathBuf>,
}

impl Booted {
    /// Boots a container, or `None` (skipped, with the reason printed) when this
    /// machine cannot; with `TENET_REQUIRE_HA=1` that is a failure instead.
    fn boot(test: &str) -> Option<Self> {
        let layout = match prerequisites() {
            Ok(layout) => layout,
            Err(why) => {
                assert!(!ha_required(), "{test}: TENET_REQUIRE_HA=1 but {why}");
                skip(&format!(
                    "{test}: {why} (TENET_REQUIRE_HA=1 makes this a failure)"
                ));
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical temp dir");
        let root = base.join("root");
        let policy = base.join("policy");
        mkdir(&policy);
        make_tree(&root);
        let console = base.join("console.log");
        write(&console, b"");
        let local = base.join("usr-local");
        mkdir(&local.join("lib/systemd/system"));
        let cgname = format!(
            "tenet-test-{}",
            base.file_name().unwrap_or_default().to_string_lossy()
        );
        let cgroups = match layout {
            Layout::Hybrid => vec![
                PathBuf::from("/sys/fs/cgroup/systemd").join(&cgname),
                PathBuf::from("/sys/fs/cgroup/unified").join(&cgname),
            ],
            Layout::Legacy => vec![PathBuf::from("/sys/fs/cgroup/systemd").join(&cgname)],
            Layout::Unified => vec![PathBuf::from("/sys/fs/cgroup").join(&cgname)],
        };
        let log = fs::File::create(base.join("boot.log")).expect("boot log");
        #[expect(clippy::disallowed_methods, reason = "the test boots the real systemd")]
        let unshare = Command::new("sh")
            .args(["-c", BOOT, "boot"])
            .arg(&root)
            .arg(AGENT)
            .arg(&policy)
            .arg(&console)
            .arg(&local)
            .arg(layout.name())
            .arg(&cgname)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("boot log"))
            .stderr(log)
            .spawn()
            .expect("start the container");
        let mut booted = Self {
            dir,
            root,
            policy,
            unshare,
            pid1: None,
            cgroups,
        };
        booted.pid1 = Some(booted.wait_for_pid1());
        booted.wait_until_running();
        Some(booted)
    }

    /// The container's PID 1: the child of `unshare` that is PID 1 of its namespace.
    fn wait_for_pid1(&mut self) -> Pid {
        let parent = self.unshare.id();
        let started = Instant::now();
        loop {
            let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
                .unwrap_or_default();
            let pid1 = children.split_whitespace().find(|c| {
                fs::read_to_string(format!("/proc/{c}/status"))
                    .is_ok_and(|s| s.lines().any(|l| l == format!("NSpid:\t{c}\t1").as_str()))
            });
            if let Some(pid) = pid1.and_then(|p| p.parse().ok()) {
                return Pid::from_raw(pid);
            }
            if let Ok(Some(status)) = self.unshare.try_wait() {
                panic!(
                    "the container ended before it booted ({status}):\n{}",
                    self.logs()
                );
            }
            assert!(
                started.elapsed() < LIMIT,
                "no PID 1 in the container:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `systemctl is-system-running` inside says `running`.
    fn wait_until_running(&mut self) {
        let started = Instant::now();
        loop {
            let out = self.inside(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match state.as_str() {
                "running" => return,
                "degraded" => panic!(
                    "the container booted degraded:\n{}\n{}",
                    self.systemctl_text(&["--failed", "--no-pager"]),
                    self.logs()
                ),
                _ => {}
            }
            if let Ok(Some(status)) = self.unshare.try_wait() {
                panic!(
                    "the container ended while booting ({status}):\n{}",
                    self.logs()
                );
            }
            assert!(
                started.elapsed() < LIMIT,
                "the container's systemd is not running after {LIMIT:?} (last answer `{state}`):\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `argv` inside the container (every namespace and its root), with a
    /// plain environment, and waits at most [`LIMIT`] for it.
    fn inside(&self, argv: &[&str]) -> Output {
        let pid1 = self.pid1.expect("the container's PID 1").to_string();
        let out_path = self.dir.path().join("inside.out");
        let err_path = self.dir.path().join("inside.err");
        let out = fs::File::create(&out_path).expect("output file");
        let err = fs::File::create(&err_path).expect("output file");
        #[expect(
            clippy::disallowed_methods,
            reason = "the test runs commands in the container"
        )]
        let mut child = Command::new("nsenter")
            .args(["--target", &pid1])
            .args(["--mount", "--pid", "--uts", "--ipc", "--net", "--cgroup"])
            .args(["--root", "--wd", "--", "env", "-i"])
            .args([
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "COLUMNS=100",
                "SYSTEMD_COLORS=0",
            ])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("run nsenter");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for nsenter") {
                break status;
            }
            if started.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{argv:?} inside the container took over {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: fs::read(&out_path).expect("output"),
            stderr: fs::read(&err_path).expect("output"),
        }
    }

    /// `systemctl ARGS` inside: its first line of output and its exit code.
    fn systemctl(&self, args: &[&str]) -> (String, Option<i32>) {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        let out = self.inside(&argv);
        let text = String::from_utf8_lossy(&out.stdout);
        (
            text.lines().next().unwrap_or("").trim().to_string(),
            out.status.code(),
        )
    }

    fn systemctl_text(&self, args: &[&str]) -> String {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        let out = self.inside(&argv);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `systemctl is-active UNIT` inside, as printed.
    fn active(&self, unit: &str) -> String {
        self.systemctl(&["is-active", unit]).0
    }

    /// `systemctl is-enabled UNIT` inside, as printed.
    fn enabled(&self, unit: &str) -> String {
        self.systemctl(&["is-enabled", unit]).0
    }

    /// The unit's main process, as the container numbers it (0: none).
    fn main_pid(&self, unit: &str) -> String {
        self.systemctl(&["show", "--property=MainPID", "--value", unit])
            .0
    }

    /// Writes the policy tree (one file), which the container sees at once.
    fn policy(&self, text: &str) {
        write(&self.policy.join("services.toml"), text.as_bytes());
    }

    /// Puts a unit file where packages of local software put theirs, in the
    /// container's /usr/local/lib/systemd/system (so /etc stays free for enable's
    /// and mask's links), and reloads.
    fn unit(&self, name: &str, text: &str) {
        write(
            &self
                .dir
                .path()
                .join("usr-local/lib/systemd/system")
                .join(name),
            text.as_bytes(),
        );
        let (_, code) = self.systemctl(&["daemon-reload"]);
        assert_eq!(code, Some(0), "daemon-reload in the container");
    }

    /// Where a path of the container lies on the host.
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// `tenet-agent apply` inside the container, on its own root.
    fn apply(&self, extra: &[&str]) -> Run {
        let mut argv = vec![
            AGENT_INSIDE,
            "apply",
            POLICY_INSIDE,
            "--root",
            "/",
            "--state-dir",
            "/var/lib/tenet-test",
            "--json",
        ];
        argv.extend_from_slice(extra);
        let out = self.inside(&argv);
        Run {
            code: out
                .status
                .code()
                .unwrap_or_else(|| panic!("tenet-agent ended by a signal: {:?}", out.status)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// What systemd and the boot script printed, for a failure message.
    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- boot script\n{}--- console\n{}",
            read("boot.log"),
            read("console.log")
        )
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(pid1) = self.pid1 {
            let _ = kill(pid1, Signal::SIGKILL);
        }
        // unshare reaps PID 1 and exits; it is killed only if it does not.
        let started = Instant::now();
        while matches!(self.unshare.try_wait(), Ok(None)) && started.elapsed() < LIMIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The cgroups empty as the kernel reaps the container's processes.
        let started = Instant::now();
        for cg in &self.cgroups {
            while cg.exists() && started.elapsed() < LIMIT {
                remove_cgroup(cg);
                if cg.exists() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Removes a cgroup directory and the ones beneath it, deepest first (a cgroup
/// directory is removed with rmdir, its control files with it).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// How the host mounts its cgroups.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// cgroup v1 with `name=systemd`, and cgroup2 at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// cgroup v1 with `name=systemd` only.
    Legacy,
    /// cgroup2 at `/sys/fs/cgroup`.
    Unified,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::Legacy => "legacy",
            Self::Unified => "unified",
        }
    }
}

/// The cgroup layout, or why a container cannot be booted here.
fn prerequisites() -> Result<Layout, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("booting a container needs root".to_string());
    }
    let missing: Vec<&str> = ["unshare", "nsenter", "setpriv", "pivot_root", "systemctl"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} missing (apt-get install util-linux systemd)",
            missing.join(", ")
        ));
    }
    if !Path::new("/usr/lib/systemd/systemd").is_file() {
        return Err("/usr/lib/systemd/systemd missing (apt-get install systemd)".to_string());
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Mount point and filesystem type of each mount (fields 5 and after " - ").
    let mounted = |point: &str, fstype: &str| {
        mounts.lines().any(|l| {
            let mut halves = l.split(" - ");
            let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
                return false;
            };
            left.split(' ').nth(4) == Some(point) && right.split(' ').next() == Some(fstype)
        })
    };
    if mounted("/sys/fs/cgroup", "cgroup2") {
        Ok(Layout::Unified)
    } else if mounted("/sys/fs/cgroup/systemd", "cgroup") {
        Ok(if mounted("/sys/fs/cgroup/unified", "cgroup2") {
            Layout::Hybrid
        } else {
            Layout::Legacy
        })
    } else {
        Err(
            "no cgroup2 at /sys/fs/cgroup and no name=systemd hierarchy at /sys/fs/cgroup/systemd"
                .to_string(),
        )
    }
}

/// The container's root: the mount points, links into `/usr`, and an `/etc` of
/// its own in which nothing but the basic system starts (no gettys, no logind).
fn make_tree(root: &Path) {
    for d in [
        "usr",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var",
        "root",
        "srv/tenet-policy",
    ] {
        mkdir(&root.join(d));
    }
    for d in ["bin", "sbin", "lib", "lib64"] {
        symlink(format!("usr/{d}"), &root.join(d));
    }
    write(&root.join("opt/tenet/tenet-agent"), b"");
    write(
        &root.join("etc/os-release"),
        b"ID=debian\nNAME=\"tenet test container\"\n",
    );
    write(
        &root.join("etc/machine-id"),
        b"7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e\n",
    );
    write(&root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n");
    write(&root.join("etc/group"), b"root:x:0:\n");
    for unit in [
        "getty.target",
        "console-getty.service",
        "systemd-logind.service",
    ] {
        symlink("/dev/null", &root.join("etc/systemd/system").join(unit));
    }
}

/// The one event for `id` in a run's report, with the run shown when it is missing.
fn event(run: &Run, id: &str) -> Value {
    let report: Report = run.report();
    report
        .events
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no event {id}:\n{}{}", run.stdout, run.stderr))
}

const ID: &str = "service:tenet-demo.service";

#[test]
fn service_running_state_converges_under_a_booted_systemd() {
    let Some(c) = Booted::boot("service_running_state_converges_under_a_booted_systemd") else {
        return;
    };
    c.unit("tenet-demo.service", DEMO);
    assert_eq!(c.active("tenet-demo.service"), "inactive");
    assert_eq!(c.enabled("tenet-demo.service"), "disabled");

    c.policy("[[service]]\nunit = \"tenet-demo\"\nenablement = \"enabled\"\nstate = \"running\"\n");
    // A dry run says what it would do and does none of it.
    let dry = c.apply(&["--dry-run"]);
    dry.expect_code(0);
    let e = event(&dry, ID);
    assert_eq!(e["status"], "would_repair", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!(["enabled tenet-demo.service", "started tenet-demo.service"]),
        "{e}"
    );
    assert_eq!(
        c.active("tenet-demo.service"),
        "inactive",
        "a dry run started it"
    );
    assert_eq!(
        c.enabled("tenet-demo.service"),
        "disabled",
        "a dry run enabled it"
    );

    let applied = c.apply(&[]);
    applied.expect_code(0);
    let e = event(&applied, ID);
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(c.active("tenet-demo.service"), "active");
    assert_eq!(c.enabled("tenet-demo.service"), "enabled");
    assert!(
        fs::read_link(c.at("/etc/systemd/system/multi-user.target.wants/tenet-demo.service"))
            .is_ok(),
        "systemctl enable made no wants link"
    );
    let pid = c.main_pid("tenet-demo.service");
    assert_ne!(pid, "0", "a running unit has a main process");

    let again = c.apply(&[]);
    again.expect_code(0);
    assert_eq!(event(&again, ID)["status"], "kept");
    assert_eq!(
        c.main_pid("tenet-demo.service"),
        pid,
        "a kept run restarted it"
    );

    // A repaired file notifies the unit: a dry run runs nothing, a run reloads it
    // (same process, ExecReload ran), then restarts it (a new process).
    let notified = |verb: &str| {
        format!(
            "[[service]]\nunit = \"tenet-demo\"\nenablement = \"enabled\"\nstate = \"running\"\n\n\
             [[file]]\npath = \"/etc/tenet-demo-{verb}.conf\"\ncontent = \"x\\n\"\n\
             notify = [\"service:tenet-demo:{verb}\"]\n"
        )
    };
    c.policy(&notified("reload"));
    let dry = c.apply(&["--dry-run"]);
    dry.expect_code(0);
    let e = event(&dry, "service:tenet-demo.service:reload");
    assert_eq!(e["status"], "would_repair", "{e}");
    let reloaded = c.inside(&["test", "-e", "/run/tenet-demo.reloaded"]);
    assert!(!reloaded.status.success(), "a dry run reloaded the unit");

    let run = c.apply(&[]);
    run.expect_code(0);
    let e = event(&run, "service:tenet-demo.service:reload");
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!(["ran systemctl reload tenet-demo.service"]),
        "{e}"
    );
    let reloaded = c.inside(&["test", "-e", "/run/tenet-demo.reloaded"]);
    assert!(reloaded.status.success(), "ExecReload did not run");
    assert_eq!(
        c.main_pid("tenet-demo.service"),
        pid,
        "a reload restarted it"
    );
    let again = c.apply(&[]);
    again.expect_code(0);
    assert!(
        again
            .report()
            .events
            .iter()
            .all(|e| e["id"] != "service:tenet-demo.service:reload"),
        "a kept file notified: {}",
        again.stdout
    );

    c.policy(&notified("restart"));
    let run = c.apply(&[]);
    run.expect_code(0);
    assert_eq!(
        event(&run, "service:tenet-demo.service:restart")["status"],
        "repaired"
    );
    assert_eq!(c.active("tenet-demo.service"), "active");
    let restarted = c.main_pid("tenet-demo.service");
    assert!(
        restarted != pid && restarted != "0",
        "restart kept the main process {pid}"
    );

    // Stopped, then masked: each reaches the manager, and holds on a second run.
    c.policy("[[service]]\nunit = \"tenet-demo\"\nstate = \"stopped\"\n");
    let stopped = c.apply(&[]);
    stopped.expect_code(0);
    let e = event(&stopped, ID);
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!(["stopped tenet-demo.service"])
    );
    assert_eq!(c.active("tenet-demo.service"), "inactive");
    assert_eq!(
        c.enabled("tenet-demo.service"),
        "enabled",
        "stop is not disable"
    );
    assert_eq!(event(&c.apply(&[]), ID)["status"], "kept");

    c.policy("[[service]]\nunit = \"tenet-demo\"\nenablement = \"masked\"\nstate = \"stopped\"\n");
    let masked = c.apply(&[]);
    masked.expect_code(0);
    assert_eq!(
        event(&masked, ID)["changes"],
        serde_json::json!(["masked tenet-demo.service"])
    );
    assert_eq!(c.enabled("tenet-demo.service"), "masked");
    let (_, code) = c.systemctl(&["start", "tenet-demo.service"]);
    assert_ne!(code, Some(0), "systemd started a masked unit");
    assert_eq!(event(&c.apply(&[]), ID)["status"], "kept");

    // Back from masked to enabled and running, in one run.
    c.policy("[[service]]\nunit = \"tenet-demo\"\nenablement = \"enabled\"\nstate = \"running\"\n");
    let back = c.apply(&[]);
    back.expect_code(0);
    assert_eq!(
        event(&back, ID)["changes"],
        serde_json::json!([
            "unmasked tenet-demo.service",
            "enabled tenet-demo.service",
            "started tenet-demo.service"
        ])
    );
    assert_eq!(c.active("tenet-demo.service"), "active");
    assert_eq!(c.enabled("tenet-demo.service"), "enabled");
}

/// A unit whose start job is under way reads as running (systemctl 252 answers
/// `activating` with exit status 3), and one that cannot start is reported as not
/// converged, read back from the manager rather than from `start`'s exit status
/// (for a simple service `start` succeeds before the exec fails). A unit whose file
/// is in /etc/systemd/system cannot be masked, and one with no file cannot be
/// started; each fails with systemctl's reason.
#[test]
fn service_activating_and_failing_units_under_a_booted_systemd() {
    let Some(c) = Booted::boot("service_activating_and_failing_units_under_a_booted_systemd")
    else {
        return;
    };
    c.unit(
        "tenet-slow.service",
        "[Service]\nType=oneshot\nExecStart=/usr/bin/sleep 60\n",
    );
    c.unit(
        "tenet-broken.service",
        "[Service]\nExecStart=/nonexistent/tenet-broken\n",
    );
    let (_, code) = c.systemctl(&["start", "--no-block", "tenet-slow.service"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        c.systemctl(&["is-active", "tenet-slow.service"]),
        ("activating".to_string(), Some(3)),
        "what this test relies on systemctl answering"
    );

    c.policy("[[service]]\nunit = \"tenet-slow\"\nstate = \"running\"\n");
    let run = c.apply(&[]);
    run.expect_code(0);
    assert_eq!(event(&run, "service:tenet-slow.service")["status"], "kept");

    c.policy("[[service]]\nunit = \"tenet-slow\"\nstate = \"stopped\"\n");
    let run = c.apply(&[]);
    run.expect_code(0);
    let e = event(&run, "service:tenet-slow.service");
    assert_eq!(e["status"], "repaired", "{e}");
    // The stop kills the oneshot's process mid-run: the unit ends failed, which is
    // stopped as much as inactive is.
    let (state, code) = c.systemctl(&["is-active", "tenet-slow.service"]);
    assert!(
        code == Some(3) && ["inactive", "failed"].contains(&state.as_str()),
        "{state} {code:?}"
    );
    assert_eq!(
        event(&c.apply(&[]), "service:tenet-slow.service")["status"],
        "kept"
    );

    c.policy("[[service]]\nunit = \"tenet-broken\"\nstate = \"running\"\n");
    let run = c.apply(&[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let e = event(&run, "service:tenet-broken.service");
    assert_eq!(e["status"], "did_not_converge", "{e}");
    assert_eq!(c.active("tenet-broken.service"), "failed");

    // A unit file in /etc/systemd/system itself: systemctl will not replace it
    // with the mask's link, and the promise fails with its message.
    write(
        &c.at("/etc/systemd/system/tenet-etc.service"),
        b"[Service]\nExecStart=/usr/bin/sleep infinity\n",
    );
    c.policy("[[service]]\nunit = \"tenet-etc\"\nenablement = \"masked\"\n");
    let run = c.apply(&[]);
    run.expect_code(1);
    let e = event(&run, "service:tenet-etc.service");
    assert_eq!(e["status"], "failed", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists"),
        "{e}"
    );
    assert_eq!(c.enabled("tenet-etc.service"), "static");

    // No unit of that name: systemd refuses the start, and says why.
    c.policy("[[service]]\nunit = \"tenet-nowhere\"\nstate = \"running\"\n");
    let run = c.apply(&[]);
    run.expect_code(1);
    let e = event(&run, "service:tenet-nowhere.service");
    assert_eq!(e["status"], "failed", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not found"),
        "{e}"
    );
}

/// The unit file of `tenet-new.service`, running `sleep SECONDS`.
fn new_unit(seconds: u32, notify: &str) -> String {
    format!(
        "[[file]]\npath = \"/etc/systemd/system/tenet-new.service\"\n\
         content = \"[Service]\\nExecStart=/usr/bin/sleep {seconds}\\n[Install]\\nWantedBy=multi-user.target\\n\"\n\
         {notify}\n"
    )
}

/// A unit file that a `[[file]]` promise rewrites is reloaded into the manager
/// before the unit is started or restarted: without `daemon-reload` systemd keeps
/// running the old definition (and `systemctl status` says "changed on disk").
#[test]
fn a_rewritten_unit_file_is_reloaded_before_the_restart_it_notifies() {
    let Some(c) = Booted::boot("a_rewritten_unit_file_is_reloaded_before_the_restart_it_notifies")
    else {
        return;
    };
    let id = "service:tenet-new.service";
    let restart = "service:tenet-new.service:restart";
    let service =
        "[[service]]\nunit = \"tenet-new\"\nenablement = \"enabled\"\nstate = \"running\"\n";
    let running = || {
        let pid = c.main_pid("tenet-new.service");
        let out = c.inside(&["cat", &format!("/proc/{pid}/cmdline")]);
        String::from_utf8_lossy(&out.stdout).replace('\0', " ")
    };

    c.policy(&(new_unit(1000, "") + service));
    let first = c.apply(&[]);
    first.expect_code(0);
    assert_eq!(event(&first, id)["status"], "repaired");
    assert_eq!(running(), "/usr/bin/sleep 1000 ");

    // The file changes and notifies a restart; the service promise, in its later
    // phase, finds the manager's definition stale and reloads it.
    c.policy(&(new_unit(2000, "notify = [\"service:tenet-new:restart\"]") + service));
    let dry = c.apply(&["--dry-run"]);
    dry.expect_code(0);
    assert_eq!(event(&dry, restart)["status"], "would_repair");
    assert_eq!(running(), "/usr/bin/sleep 1000 ", "a dry run restarted it");
    let run = c.apply(&[]);
    run.expect_code(0);
    let e = event(&run, id);
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!(["reloaded systemd's unit files (tenet-new.service changed on disk)"])
    );
    let e = event(&run, restart);
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!(["ran systemctl restart tenet-new.service"])
    );
    assert_eq!(
        running(),
        "/usr/bin/sleep 2000 ",
        "the restart ran the old definition"
    );
    assert_eq!(
        c.systemctl(&[
            "show",
            "--property=NeedDaemonReload",
            "--value",
            "tenet-new.service"
        ])
        .0,
        "no"
    );

    // With no [[service]] promise on the unit, the notify action reloads it itself.
    c.policy(&new_unit(3000, "notify = [\"service:tenet-new:restart\"]"));
    let run = c.apply(&[]);
    run.expect_code(0);
    let e = event(&run, restart);
    assert_eq!(e["status"], "repaired", "{e}");
    assert_eq!(
        e["changes"],
        serde_json::json!([
            "reloaded systemd's unit files (tenet-new.service changed on disk)",
            "ran systemctl restart tenet-new.service"
        ])
    );
    assert_eq!(running(), "/usr/bin/sleep 3000 ");

    c.policy(&(new_unit(3000, "notify = [\"service:tenet-new:restart\"]") + service));
    let again = c.apply(&[]);
    again.expect_code(0);
    assert_eq!(again.report().count("repaired"), 0, "{}", again.stdout);
}
