//! Links a local user controls never redirect a change. Each attack is staged in a
//! sandbox root with the attacker's directories and links owned by `nobody` (the
//! tests run as root, like the agent): a directory on a managed path swapped for a
//! link to a root-owned directory, an edited file swapped for a link to a root-owned
//! file, foreign links in a sticky world-writable directory, a copy source linked to
//! a root-only file, chown and chmod aimed through a link. Each promise must be
//! blocked, naming the link and its owner, and the victim must stay as it was, with
//! `openat2` and without it (`TENET_NO_OPENAT2`). Root's own links are still
//! followed, and the report names the file actually written. Hard links a user
//! could make where `protected_hardlinks` is off (to root's file, or to root's own
//! link, in the user's directory or a sticky one) are not touched or followed, and a
//! directory the agent makes for a user is given away only through its descriptor,
//! whatever a racing process puts under its name. Holding directories open does
//! not exhaust the default soft descriptor limit. A copy from a user's directory
//! is root's, so it does not keep the user's setuid and setgid bits. A file a user
//! can grow is read only up to a bound. A `dir` made in a user's directory is the
//! user's unless the policy names an owner, so what is beneath it converges.
//!
//! `finding_13_*`: directories verified earlier in a run are held open, so swapping
//! one for a link during the run (here, from the reporter, between two phases) does
//! not redirect a later change.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tenet_agent::converge::{Diffs, Mode};
use tenet_agent::ops::apply::{self, ApplyOptions};
use tenet_agent::report::{PromiseEvent, Reporter, Summary};

use crate::util::{Report, Run, Sandbox, agent, mkdir, symlink, write, write_mode};

/// `nobody`'s uid (Debian's; checked against the password database).
const NOBODY: u32 = 65534;

/// The attacks are staged as root (to chown) with a `nobody` user, as in CI.
fn stage_as_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests stage attacks by chowning to nobody: run them as root"
    );
    let nobody = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(NOBODY))
        .ok()
        .flatten();
    assert!(
        nobody.is_some_and(|u| u.name == "nobody"),
        "these tests need the user nobody with uid {NOBODY}"
    );
}

/// Gives `path` (never what a link points to) to `nobody`.
fn give_to_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
}

/// A directory made and given to `nobody`.
fn nobody_dir(path: &Path) {
    mkdir(path);
    give_to_nobody(path);
}

/// A link made and given to `nobody`.
fn nobody_link(target: impl AsRef<Path>, at: &Path) {
    symlink(target, at);
    give_to_nobody(at);
}

/// `apply --json` with the state outside the root, with or without `openat2`.
fn apply(sb: &Sandbox, openat2: bool) -> Run {
    let mut cmd = agent();
    cmd.args(["apply", "--json", "--root"])
        .arg(&sb.root)
        .arg("--state-dir")
        .arg(&sb.state)
        .arg(&sb.policy);
    if !openat2 {
        cmd.env("TENET_NO_OPENAT2", "1");
    }
    let out = cmd.output().expect("run tenet-agent");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Each promise's status and reason, in order.
fn outcomes(report: &Report) -> Vec<(String, String)> {
    report
        .events
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Asserts that every promise was blocked and each reason names its link and `nobody`.
#[track_caller]
fn assert_blocked(run: &Run, links: &[&str]) {
    run.expect_code(1);
    let got = outcomes(&run.report());
    assert_eq!(got.len(), links.len(), "{got:?}");
    for ((status, reason), link) in got.iter().zip(links) {
        assert_eq!(status, "blocked", "{reason}");
        assert!(reason.contains(link), "names the link {link}: {reason}");
        assert!(
            reason.contains(&format!("uid {NOBODY} (nobody)")),
            "names the owner: {reason}"
        );
    }
}

/// A listing of `dir` to compare before and after.
fn snapshot(dir: &Path) -> Vec<String> {
    crate::util::listing(dir)
}

#[test]
fn finding_01_user_directory_swapped_for_a_link_to_a_root_directory_is_not_written() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[file]]\npath = \"/home/alice/.config/app/app.conf\"\ncontent = \"setting = 1\\n\"\n\
             owner = \"nobody\"\nmode = \"0644\"\n",
        )]);
        let victim = sb.at("/victim-etc");
        mkdir(&victim);
        write(&victim.join("keep"), b"root's\n");
        nobody_dir(&sb.at("/home/alice"));
        nobody_dir(&sb.at("/home/alice/.config"));
        // alice's own link in alice's own directory: the kernel's rule alone follows it.
        nobody_link(&victim, &sb.at("/home/alice/.config/app"));
        let before = snapshot(&victim);

        let run = apply(&sb, openat2);
        assert_blocked(&run, &["/home/alice/.config/app"]);
        assert_eq!(snapshot(&victim), before, "openat2={openat2}");
        assert!(!victim.join("app.conf").exists());
    }
}

#[test]
fn finding_01_edited_file_swapped_for_a_link_to_a_root_file_is_not_edited() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[line]]\nfile = \"/home/alice/.profile\"\nline = \"umask 027\"\n\n\
             [[line]]\nfile = \"/home/alice/.bashrc\"\nline = \"umask 027\"\n",
        )]);
        let passwd = sb.at("/victim2/passwd");
        write(&passwd, b"root:x:0:0:root:/root:/bin/bash\n");
        nobody_dir(&sb.at("/home/alice"));
        nobody_link(&passwd, &sb.at("/home/alice/.profile"));
        nobody_link("../../victim2/passwd", &sb.at("/home/alice/.bashrc"));
        let before = snapshot(&sb.at("/victim2"));

        let run = apply(&sb, openat2);
        assert_blocked(&run, &["/home/alice/.profile", "/home/alice/.bashrc"]);
        assert_eq!(snapshot(&sb.at("/victim2")), before, "openat2={openat2}");
    }
}

#[test]
fn finding_01_foreign_links_in_a_sticky_directory_are_not_followed() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[line]]\nfile = \"/sticky/app.lock.conf\"\nline = \"pid = 42\"\n\n\
             [[file]]\npath = \"/sticky/cache/app/stamp\"\ncontent = \"x\\n\"\n",
        )]);
        let victim = sb.at("/victim");
        write(&victim.join("motd"), b"orig\n");
        let sticky = sb.at("/sticky");
        mkdir(&sticky);
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod");
        nobody_link(victim.join("motd"), &sticky.join("app.lock.conf"));
        nobody_link(&victim, &sticky.join("cache"));
        let before = snapshot(&victim);

        let run = apply(&sb, openat2);
        assert_blocked(&run, &["/sticky/cache", "/sticky/app.lock.conf"]);
        for (_, reason) in outcomes(&run.report()) {
            assert!(reason.contains("sticky"), "{reason}");
        }
        assert_eq!(snapshot(&victim), before, "openat2={openat2}");
    }
}

#[test]
fn finding_01_copy_source_linked_to_a_root_only_file_is_not_read() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[copy]]\nfrom = \"/home/alice/src\"\nto = \"/srv/copy\"\n",
        )]);
        write_mode(&sb.at("/secret/shadow"), b"root:$6$hash\n", 0o600);
        nobody_dir(&sb.at("/home/alice"));
        nobody_link(sb.at("/secret/shadow"), &sb.at("/home/alice/src"));

        let run = apply(&sb, openat2);
        assert_blocked(&run, &["/home/alice/src"]);
        assert!(!sb.at("/srv/copy").exists(), "openat2={openat2}");
    }
}

#[test]
fn finding_01_chown_and_chmod_are_not_redirected() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[dir]]\npath = \"/home/alice/data/ssh\"\nmode = \"0777\"\nowner = \"nobody\"\n\n\
             [[file]]\npath = \"/home/alice/data/shadow\"\ncontent = \"x\\n\"\n\
             mode = \"0666\"\nowner = \"nobody\"\n",
        )]);
        let victim = sb.at("/etc");
        mkdir(&victim.join("ssh"));
        write_mode(&victim.join("shadow"), b"root:$6$hash\n", 0o640);
        nobody_dir(&sb.at("/home/alice"));
        nobody_link(&victim, &sb.at("/home/alice/data"));
        let before = snapshot(&victim);

        let run = apply(&sb, openat2);
        assert_blocked(&run, &["/home/alice/data", "/home/alice/data"]);
        assert_eq!(snapshot(&victim), before, "openat2={openat2}");
        let ssh = fs::metadata(victim.join("ssh")).expect("stat");
        assert_eq!((ssh.uid(), ssh.mode() & 0o7777), (0, 0o755));
    }
}

/// A hard link a user made in the user's own directory to root's file (possible
/// where `protected_hardlinks` is off; root stages it here) is neither read nor
/// chmodded nor chowned.
#[test]
fn finding_01_hard_link_in_a_user_directory_is_not_chmodded() {
    stage_as_root();
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        "[[file]]\npath = \"/home/alice/shadow\"\ncontent = \"root:$6$hash\\n\"\n\
         mode = \"0666\"\nowner = \"nobody\"\n",
    )]);
    let victim = sb.at("/etc/shadow");
    write_mode(&victim, b"root:$6$hash\n", 0o640);
    nobody_dir(&sb.at("/home/alice"));
    fs::hard_link(&victim, sb.at("/home/alice/shadow")).expect("hard link");
    let before = snapshot(&sb.at("/etc"));

    let run = apply(&sb, true);
    run.expect_code(1);
    let got = outcomes(&run.report());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "failed", "{got:?}");
    assert!(got[0].1.contains("2 names, owned by uid 0"), "{got:?}");
    assert_eq!(snapshot(&sb.at("/etc")), before, "the victim is untouched");
}

/// Root's own links, and a user's links to that user's own files, are followed as
/// before, and each change names the file it actually wrote.
#[test]
fn finding_01_legitimate_links_are_followed_and_the_report_names_the_file_written() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[file]]\npath = \"/etc/app/x.conf\"\ncontent = \"x\\n\"\n\n\
             [[line]]\nfile = \"/home/alice/.profile\"\nline = \"umask 027\"\n",
        )]);
        mkdir(&sb.at("/etc/real"));
        symlink("real", &sb.at("/etc/app"));
        nobody_dir(&sb.at("/home/alice"));
        write(&sb.at("/home/alice/dotfiles/profile"), b"# alice\n");
        give_to_nobody(&sb.at("/home/alice/dotfiles"));
        give_to_nobody(&sb.at("/home/alice/dotfiles/profile"));
        nobody_link("dotfiles/profile", &sb.at("/home/alice/.profile"));

        let run = apply(&sb, openat2);
        run.expect_code(0);
        let report = run.report();
        let changes: Vec<String> = report
            .events
            .iter()
            .map(|e| e["changes"].to_string())
            .collect();
        assert!(changes[0].contains("(at /etc/real/x.conf)"), "{changes:?}");
        assert!(
            changes[1].contains("(at /home/alice/dotfiles/profile)"),
            "{changes:?}"
        );
        assert_eq!(
            fs::read_to_string(sb.at("/etc/real/x.conf")).expect("written"),
            "x\n"
        );
        let profile = sb.at("/home/alice/dotfiles/profile");
        assert_eq!(
            fs::read_to_string(&profile).expect("edited"),
            "# alice\numask 027\n"
        );
        assert_eq!(fs::metadata(&profile).expect("stat").uid(), NOBODY);
        assert!(
            fs::symlink_metadata(sb.at("/home/alice/.profile"))
                .expect("link")
                .file_type()
                .is_symlink()
        );
    }
}

/// Swaps `/home/alice/conf` for a link to `/victim` (as `nobody` would) when the
/// first promise is reported, before the next phase runs.
struct SwapOnFirst<'a> {
    sb: &'a Sandbox,
    swapped: bool,
    events: Vec<PromiseEvent>,
}

impl Reporter for SwapOnFirst<'_> {
    fn warning(&mut self, _message: &str) {}

    fn promise(&mut self, event: &PromiseEvent) {
        if !self.swapped {
            let conf = self.sb.at("/home/alice/conf");
            #[expect(
                clippy::disallowed_methods,
                reason = "the attacker moves its directory"
            )]
            fs::rename(&conf, self.sb.at("/home/alice/conf.old")).expect("move conf away");
            nobody_link(self.sb.at("/victim"), &conf);
            self.swapped = true;
        }
        self.events.push(event.clone());
    }

    fn summary(&mut self, _summary: &Summary) {}
}

/// A directory verified by one unit and swapped for a link before a later unit
/// uses it: the later unit works in the directory that was verified (held open),
/// never through the link.
#[test]
fn finding_13_directory_swapped_for_a_link_during_the_run_redirects_nothing() {
    stage_as_root();
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        "[[file]]\npath = \"/home/alice/conf/a\"\ncontent = \"a\\n\"\n\n\
         [[line]]\nfile = \"/home/alice/conf/b\"\nline = \"added\"\n",
    )]);
    write(&sb.at("/victim/b"), b"victim\n");
    nobody_dir(&sb.at("/home/alice"));
    nobody_dir(&sb.at("/home/alice/conf"));
    write_mode(&sb.at("/home/alice/conf/a"), b"a\n", 0o644);
    write(&sb.at("/home/alice/conf/b"), b"alice\n");
    give_to_nobody(&sb.at("/home/alice/conf/b"));
    let before = snapshot(&sb.at("/victim"));

    let mut reporter = SwapOnFirst {
        sb: &sb,
        swapped: false,
        events: Vec::new(),
    };
    let opts = ApplyOptions {
        tree: sb.policy.clone(),
        files: None,
        root: sb.root.clone(),
        state_dir: Some(sb.state.clone()),
        mode: Mode::Apply,
        diffs: Diffs::Skip,
        facts: Vec::new(),
        lock_timeout: std::time::Duration::ZERO,
        rehash: false,
        serial: None,
    };
    apply::apply(&opts, &mut reporter).expect("the run happens");
    assert!(reporter.swapped);
    assert_eq!(reporter.events.len(), 2, "{:?}", reporter.events);

    assert_eq!(
        snapshot(&sb.at("/victim")),
        before,
        "the victim is untouched"
    );
    // The edit went to the directory verified earlier, which the attacker moved.
    assert_eq!(
        fs::read_to_string(sb.at("/home/alice/conf.old/b")).expect("edited"),
        "alice\nadded\n"
    );
    // Looked at again after the change, the path now leads through nobody's link
    // to a root-owned directory: that is reported, naming the link and its owner.
    let edit = &reporter.events[1];
    let reason = edit.reason.clone().unwrap_or_default();
    assert!(reason.contains("/home/alice/conf"), "{edit:?}");
    assert!(reason.contains("uid 65534 (nobody)"), "{edit:?}");
}

/// How long the attacker's process races the agent at most.
const RACE_FOR: std::time::Duration = std::time::Duration::from_secs(8);

/// A directory the agent creates in a user's directory is given to that user. The
/// user, racing the agent (here a child process looping on `rmdir` and `link`, as
/// `nobody` can where `protected_hardlinks` is off), replaces the new directory
/// with a hard link to root's file between its creation and the chown: the chown
/// must reach the directory the agent made, never what the name holds by then.
#[test]
fn finding_01_new_directory_swapped_for_a_hard_link_before_its_chown() {
    use tenet_agent::fsops::{Attrs, Batch, Root};

    stage_as_root();
    let sb = Sandbox::new();
    let victim = sb.at("/etc/shadow");
    write_mode(&victim, b"root:$6$hash\n", 0o640);
    nobody_dir(&sb.at("/home/alice"));
    let new = sb.at("/home/alice/new");
    let stop = sb.outside.join("stop");
    #[expect(
        clippy::disallowed_methods,
        reason = "the attacker's own process, not the agent"
    )]
    let mut racer = std::process::Command::new("perl")
        .args([
            "-e",
            "my ($d, $v, $stop, $secs) = @ARGV; my $end = time + $secs; my $n = 0;\n\
             while (1) {\n\
               if (rmdir $d) { link $v, $d; }\n\
               if (++$n % 4096 == 0) { last if -e $stop || time > $end; }\n\
             }",
        ])
        .arg(&new)
        .arg(&victim)
        .arg(&stop)
        .arg((RACE_FOR.as_secs() + 2).to_string())
        .spawn()
        .expect("start the racing process (perl)");

    let started = std::time::Instant::now();
    let mut tries = 0u32;
    let mut disrupted = 0u32;
    while started.elapsed() < RACE_FOR && fs::metadata(&victim).expect("stat").uid() == 0 {
        tries += 1;
        let root = Root::new(&sb.root).expect("root");
        let mut batch = Batch::new(&root, 1);
        // Whether the write is refused depends on who wins; the victim is what matters.
        if batch
            .write_file(0, &new.join("f"), b"x\n", Attrs::default())
            .is_err()
        {
            disrupted += 1;
        }
        drop(batch);
        drop(root);
        let _ = fs::remove_dir_all(&new).or_else(|_| fs::remove_file(&new));
    }
    write(&stop, b"");
    let status = racer.wait().expect("racer exits");
    assert!(status.success(), "the racing process failed: {status}");

    let st = fs::metadata(&victim).expect("stat");
    assert_eq!(
        (st.uid(), st.gid(), st.mode() & 0o7777),
        (0, 0, 0o640),
        "root's file was given away after {tries} tries"
    );
    assert!(
        disrupted > 0,
        "the racing process never won a step in {tries} tries"
    );
}

/// In a sticky world-writable directory owned by root (`/tmp`) every user can
/// make entries, so a file there with several names may be root's file hard-linked
/// by anyone (where `protected_hardlinks` is off). Observed as the user's own file,
/// then swapped for such a link before the change is carried out: the chmod and
/// chown are refused.
#[test]
fn finding_01_hard_link_in_a_sticky_directory_is_not_chmodded() {
    use tenet_agent::fsops::{Attrs, Batch, Root};

    stage_as_root();
    let sb = Sandbox::new();
    let victim = sb.at("/etc/shadow");
    write_mode(&victim, b"x\n", 0o640);
    let sticky = sb.at("/tmp");
    mkdir(&sticky);
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::hard_link(&victim, sticky.join("app.conf")).expect("hard link");

    let root = Root::new(&sb.root).expect("root");
    let mut batch = Batch::new(&root, 1);
    let err = batch
        .set_attrs(
            &sticky.join("app.conf"),
            Attrs {
                mode: Some(0o666),
                uid: Some(NOBODY),
                gid: None,
            },
        )
        .expect_err("a hard link in a sticky directory is refused");
    assert!(err.to_string().contains("2 names, owned by uid 0"), "{err}");
    let st = fs::metadata(&victim).expect("stat");
    assert_eq!((st.uid(), st.mode() & 0o7777), (0, 0o640));
}

/// A link owned by root, hard-linked into a sticky world-writable directory by a
/// user (where `protected_hardlinks` is off), looks like root's own link there: it
/// is not followed when it has several names.
#[test]
fn finding_01_root_link_hard_linked_into_a_sticky_directory_is_not_followed() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[(
            "p.toml",
            "[[file]]\npath = \"/tmp/cache/stamp\"\ncontent = \"x\\n\"\n",
        )]);
        let victim = sb.at("/victim");
        write(&victim.join("keep"), b"root's\n");
        // Root's own link elsewhere, to a root directory.
        symlink(&victim, &sb.at("/etc/alternatives/app"));
        let sticky = sb.at("/tmp");
        mkdir(&sticky);
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod");
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            &sb.at("/etc/alternatives/app"),
            nix::fcntl::AT_FDCWD,
            &sticky.join("cache"),
            nix::fcntl::AtFlags::empty(),
        )
        .expect("hard link to the link");
        let before = snapshot(&victim);

        let run = apply(&sb, openat2);
        run.expect_code(1);
        let got = outcomes(&run.report());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_ne!(got[0].0, "repaired", "{got:?}");
        assert!(got[0].1.contains("/tmp/cache"), "{got:?}");
        assert_eq!(snapshot(&victim), before, "openat2={openat2}");
    }
}

/// An `absent` glob over users' directories: one user's link to another's
/// directory makes the glob find a match there, which resolution refuses. That
/// match is left alone, as any match outside the path the policy names, and the
/// other matches are still removed: one user cannot stop the cleanup for everyone.
#[test]
fn finding_01_a_users_link_does_not_block_an_absent_glob_for_everyone() {
    stage_as_root();
    for openat2 in [true, false] {
        let sb = Sandbox::new();
        sb.policy(&[("p.toml", "[[absent]]\npaths = [\"/home/*/cache/junk\"]\n")]);
        write(&sb.at("/home/bob/cache/junk"), b"bob's junk\n");
        write(&sb.at("/victim/junk"), b"root's\n");
        nobody_dir(&sb.at("/home/alice"));
        nobody_link(sb.at("/victim"), &sb.at("/home/alice/cache"));
        let before = snapshot(&sb.at("/victim"));

        let run = apply(&sb, openat2);
        run.expect_code(0);
        let got = outcomes(&run.report());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "repaired", "{got:?}");
        assert!(!sb.at("/home/bob/cache/junk").exists(), "openat2={openat2}");
        assert_eq!(snapshot(&sb.at("/victim")), before, "openat2={openat2}");
    }
}

/// Files written into many directories in one run hold a descriptor per directory
/// only up to a bound: with the soft `RLIMIT_NOFILE` a service gets by default
/// (1024), a run creating 1500 files in 1500 directories repairs them all.
#[test]
fn finding_01_a_run_over_many_directories_fits_the_default_descriptor_limit() {
    let sb = Sandbox::new();
    let policy: String = (0..1500)
        .map(|i| format!("[[file]]\npath = \"/srv/d{i}/conf\"\ncontent = \"x\\n\"\n\n"))
        .collect();
    sb.policy(&[("p.toml", &policy)]);
    #[expect(
        clippy::disallowed_methods,
        reason = "a shell lowers the limit, then runs the agent itself"
    )]
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$@\"", "sh"])
        .arg(crate::util::AGENT)
        .args(["apply", "--json", "--root"])
        .arg(&sb.root)
        .arg("--state-dir")
        .arg(&sb.state)
        .arg(&sb.policy)
        .output()
        .expect("run tenet-agent");
    let run = Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.expect_code(0);
    let report = run.report();
    assert_eq!(report.count("repaired"), 1500);
    assert_eq!(
        fs::read_to_string(sb.at("/srv/d1499/conf")).expect("written"),
        "x\n"
    );
}

/// A `copy` whose source a user owns (a service's state directory, as the NFS
/// status-monitor entries are statd's): a setuid or setgid bit the user set on a
/// source file must not come along. The copy keeps the source's owner, but a
/// setuid bit on a file in a place root manages is never the user's to give.
/// Root's own files keep theirs.
#[test]
fn finding_01_copy_from_a_users_directory_drops_setuid_and_setgid() {
    stage_as_root();
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        "[[copy]]\nfrom = \"/home/alice/sm\"\nto = \"/export/sm\"\n\n\
         [[copy]]\nfrom = \"/home/alice/tool\"\nto = \"/srv/tool\"\n\n\
         [[copy]]\nfrom = \"/opt/root-tool\"\nto = \"/srv/root-tool\"\n",
    )]);
    nobody_dir(&sb.at("/home/alice"));
    nobody_dir(&sb.at("/home/alice/sm"));
    for (path, mode) in [
        ("/home/alice/sm/host", 0o4755),
        ("/home/alice/sm/other", 0o2755),
        ("/home/alice/tool", 0o6755),
    ] {
        write_mode(&sb.at(path), b"#!/bin/sh\nexec sh\n", mode);
        give_to_nobody(&sb.at(path));
        // chown clears the bits; set them again as the user would.
        crate::util::set_mode(&sb.at(path), mode);
    }
    write_mode(&sb.at("/opt/root-tool"), b"root's\n", 0o4755);

    let run = apply(&sb, true);
    run.expect_code(0);
    for path in ["/export/sm/host", "/export/sm/other", "/srv/tool"] {
        let st = fs::metadata(sb.at(path)).expect("copied");
        assert_eq!((st.uid(), st.mode() & 0o7777), (65534, 0o755), "{path}");
    }
    let st = fs::metadata(sb.at("/srv/root-tool")).expect("copied");
    assert_eq!(
        st.mode() & 0o7777,
        0o4755,
        "root's own setuid file is copied as it is"
    );
    // A second run finds the copies as they should be.
    let again = apply(&sb, true);
    again.expect_code(0);
    assert_eq!(again.report().count("repaired"), 0, "{}", again.stdout);
}

/// A file a user can grow, made a sparse terabyte (`truncate -s 1T`, instant and
/// free), fails the promises that read it; the run goes on for the others instead
/// of the agent aborting on a terabyte allocation.
#[test]
fn finding_01_a_users_sparse_terabyte_fails_its_promise_not_the_run() {
    stage_as_root();
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        "[[line]]\nfile = \"/home/alice/.profile\"\nline = \"umask 027\"\n\n\
         [[line]]\nfile = \"/etc/profile\"\nline = \"umask 022\"\n",
    )]);
    nobody_dir(&sb.at("/home/alice"));
    let profile = sb.at("/home/alice/.profile");
    write(&profile, b"");
    give_to_nobody(&profile);
    fs::OpenOptions::new()
        .write(true)
        .open(&profile)
        .and_then(|f| f.set_len(1 << 40))
        .expect("sparse terabyte");
    write(&sb.at("/etc/profile"), b"# root's\n");

    let run = apply(&sb, true);
    run.expect_code(1);
    let report = run.report();
    let alice = report
        .events
        .iter()
        .find(|e| {
            e["id"]
                .as_str()
                .unwrap_or_default()
                .contains("/home/alice/")
        })
        .expect("alice's edit is reported");
    assert_eq!(alice["status"], "failed", "{alice}");
    assert!(
        alice["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("bytes"),
        "{alice}"
    );
    assert_eq!(
        fs::read_to_string(sb.at("/etc/profile")).expect("edited"),
        "# root's\numask 022\n"
    );
    assert_eq!(fs::metadata(&profile).expect("stat").len(), 1 << 40);
}

/// A `dir` promise in a user's directory, with no owner given, makes a directory
/// the walk can go on through, as the directories made on the way are: the user's.
/// The usual `~/.ssh` pair converges in one run, and stays kept. An owner the
/// policy names wins.
#[test]
fn finding_01_a_dir_made_in_a_users_directory_does_not_block_what_is_beneath() {
    stage_as_root();
    let sb = Sandbox::new();
    sb.policy(&[(
        "p.toml",
        "[[dir]]\npath = \"/home/alice/.ssh\"\nmode = \"0700\"\n\n\
         [[file]]\npath = \"/home/alice/.ssh/authorized_keys\"\ncontent = \"ssh-ed25519 AAAA\\n\"\n\
         mode = \"0600\"\n\n\
         [[dir]]\npath = \"/home/alice/shared\"\nowner = \"root\"\n",
    )]);
    nobody_dir(&sb.at("/home/alice"));

    let run = apply(&sb, true);
    run.expect_code(0);
    let ssh = fs::metadata(sb.at("/home/alice/.ssh")).expect("made");
    assert_eq!((ssh.uid(), ssh.mode() & 0o7777), (NOBODY, 0o700));
    assert_eq!(
        fs::read_to_string(sb.at("/home/alice/.ssh/authorized_keys")).expect("written"),
        "ssh-ed25519 AAAA\n"
    );
    let shared = fs::metadata(sb.at("/home/alice/shared")).expect("made");
    assert_eq!(shared.uid(), 0, "the policy's owner wins");
    let again = apply(&sb, true);
    again.expect_code(0);
    assert_eq!(again.report().count("repaired"), 0, "{}", again.stdout);
}
