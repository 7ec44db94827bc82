//! docs/install.md, executed: the guide's own shell blocks run, line by line, against
//! the built binaries, with its absolute paths moved into a temporary directory
//! (`/secure/deploy` on a key host, `/srv/tenet` on the package filesystem,
//! `/etc/tenet` and `/var/lib/tenet` on each of three members). Its `policyd.toml` and
//! the shipped example `agent.toml` configure a real master and three real members,
//! which then take serial 1, the new serial of "Publishing a new serial", and the
//! renewed root of "Renewing and rotating the root". A guide whose commands, flags or
//! claims drift from the programs fails here.
//!
//! Lines that need a real cluster or this machine's own system (systemctl, crm,
//! firewall-cmd, nft, apt, package builds) are not run; everything else is.
#![expect(
    clippy::disallowed_methods,
    reason = "the test runs the guide's commands through sh, as an administrator would"
)]

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenet_tests::binary;
use tenet_tests::fixture::Policyd;

const MEMBERS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Where the lines of a `### Or: ...` subsection go: no section the test runs.
const ALTERNATIVE: u32 = u32::MAX;

/// The guide's sections (`## N. Title`) and their `sh` blocks' lines.
fn guide() -> BTreeMap<u32, Vec<String>> {
    let text = fs::read_to_string(repo().join("docs/install.md")).expect("docs/install.md");
    let mut sections: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut section = 0;
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("### Or") {
            // An alternative to the section's own steps (joining instead of
            // enrolling by hand): tested on its own, not run in this walk-through.
            section = ALTERNATIVE;
        } else if let Some(rest) = line.strip_prefix("## ") {
            if let Some((n, _)) = rest.split_once('.') {
                section = n.trim().parse().unwrap_or(section);
            }
        } else if line.trim_start().starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
        } else if in_sh {
            // A trailing `# comment` is the guide talking, not the shell.
            let command = line.split(" #").next().unwrap_or("").trim();
            if !command.is_empty() && !command.starts_with('#') {
                sections
                    .entry(section)
                    .or_default()
                    .push(command.to_string());
            }
        }
    }
    sections
}

/// The guide's `policyd.toml` block (section 5).
fn guide_policyd_toml() -> String {
    let text = fs::read_to_string(repo().join("docs/install.md")).expect("docs/install.md");
    let section = text.find("\n## 5.").expect("the guide has a section 5");
    let start = section
        + text[section..]
            .find("```toml\n")
            .expect("a toml block in section 5")
        + "```toml\n".len();
    let len = text[start..].find("```").expect("the toml block ends");
    text[start..start + len].to_string()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// The guide's paths, moved into `t`, for `member`'s own files.
struct Paths<'a> {
    t: &'a Path,
}

impl Paths<'_> {
    fn key_host(&self) -> PathBuf {
        self.t.join("keyhost")
    }
    fn package_fs(&self) -> PathBuf {
        self.t.join("pkgfs")
    }
    fn member(&self, member: &str) -> PathBuf {
        self.t.join("members").join(member)
    }
    fn policy(&self) -> PathBuf {
        self.t.join("cluster-policy")
    }

    fn rewrite(&self, line: &str, member: &str) -> String {
        let m = self.member(member);
        line.replace("scp keyhost:", "cp ")
            .replace(
                "/secure/deploy",
                &format!("{}/secure/deploy", self.key_host().display()),
            )
            .replace(
                "/srv/tenet",
                &format!("{}/srv/tenet", self.package_fs().display()),
            )
            .replace("/etc/tenet", &format!("{}/etc/tenet", m.display()))
            .replace("/var/lib/tenet", &format!("{}/var/lib/tenet", m.display()))
            .replace("cluster-policy/", &format!("{}/", self.policy().display()))
    }
}

/// Runs one guide line through `sh` with the built binaries first on PATH.
fn sh(line: &str) -> Output {
    let bin = binary("tenet-agent");
    let dir = bin.parent().expect("the binaries' directory");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-ec", line])
        .env("PATH", path)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "the guide's line failed: {line}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Lines the test cannot run here: they need a real cluster or change this machine.
fn needs_a_real_host(line: &str) -> bool {
    [
        "systemctl",
        "crm",
        "cibadmin",
        "firewall-cmd",
        "nft",
        "apt",
        "dnf",
        "dpkg",
        "rpm",
        "cargo",
        "scripts/",
        "tenet-policyd status",
        "tenet-policyd validate",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// Runs section `n`'s lines for `member` (with `subst` applied first) and returns
/// their stdout, joined.
fn run_section(
    sections: &BTreeMap<u32, Vec<String>>,
    n: u32,
    paths: &Paths<'_>,
    member: &str,
    subst: &[(String, String)],
) -> String {
    let lines = sections
        .get(&n)
        .unwrap_or_else(|| panic!("the guide has no section {n} with commands"));
    let mut stdout = String::new();
    for line in lines {
        if needs_a_real_host(line) {
            continue;
        }
        let mut line = line.clone();
        for (from, to) in subst {
            line = line.replace(from, to);
        }
        let out = sh(&paths.rewrite(&line, member));
        stdout.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    stdout
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Copies the DCE example as the site's policy tree.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read the example") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `tenet-agent run` for `member` into its sandbox root; returns the serial the run
/// enforced, as its `last-run.json` records it (and its summary line names).
fn member_run(paths: &Paths<'_>, member: &str, master: &str) -> u64 {
    let m = paths.member(member);
    let example = fs::read_to_string(repo().join("packaging/examples/agent.toml"))
        .expect("the shipped agent.toml");
    let mut config = String::new();
    for line in example.lines() {
        let line = if line.starts_with("member ") {
            format!("member = \"{member}\"")
        } else if line.starts_with("master ") {
            format!("master = \"{master}\"")
        } else {
            paths.rewrite(line, member)
        };
        config.push_str(&line);
        config.push('\n');
    }
    // The packaged defaults, moved into the member's directory, and a sandbox root.
    let root = m.join("root");
    fs::create_dir_all(&root).expect("mkdir root");
    config.push_str(&format!(
        "state_dir = \"{0}/var/lib/tenet\"\nnode_key = \"{0}/var/lib/tenet/localhost.key\"\nroot = \"{1}\"\nconnect_timeout = \"5s\"\n",
        m.display(),
        root.display()
    ));
    let file = m.join("etc/tenet/agent.toml");
    fs::write(&file, config).expect("write agent.toml");
    let out = Command::new(binary("tenet-agent"))
        .args(["run", "--json", "--config"])
        .arg(&file)
        .output()
        .expect("tenet-agent runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{member}: tenet-agent run exited {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let last_run = m.join("var/lib/tenet/last-run.json");
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&last_run)
            .unwrap_or_else(|e| panic!("{member}: {}: {e}", last_run.display())),
    )
    .unwrap_or_else(|e| panic!("{member}: last-run.json is not JSON: {e}"));
    let recorded = record
        .get("serial")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{member}: no serial in last-run.json: {record}\n{stdout}"));
    // The run's own summary line names the same serial.
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find(|l| l.contains(r#""type":"summary""#))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{member}: no summary line\n{stdout}"));
    assert_eq!(
        summary.get("serial").and_then(serde_json::Value::as_u64),
        Some(recorded),
        "{member}: the summary's serial\n{stdout}"
    );
    recorded
}

#[test]
fn the_install_guide_runs_as_written_on_a_key_host_a_package_fs_and_three_members() {
    let sections = guide();
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = Paths { t: tmp.path() };
    // What the package's postinst makes on each member.
    for m in MEMBERS {
        for dir in ["etc/tenet", "var/lib/tenet"] {
            fs::create_dir_all(paths.member(m).join(dir)).expect("mkdir");
        }
    }
    fs::create_dir_all(paths.key_host().join("secure")).expect("mkdir");
    fs::create_dir_all(paths.package_fs().join("srv/tenet/bundles")).expect("mkdir");
    copy_tree(
        &repo().join("policies/examples/dce-cluster"),
        &paths.policy(),
    );

    // 2. Keys, on the key host.
    run_section(&sections, 2, &paths, "alpha", &[]);
    // 3. Each member's root copy and identity; 4. enrolling with the printed ids.
    let mut ids = Vec::new();
    for m in MEMBERS {
        let printed = run_section(&sections, 3, &paths, m, &[]);
        let id = printed
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|w| w.len() == 64)
            .unwrap_or_else(|| panic!("node-key printed no key id: {printed}"))
            .to_string();
        ids.push((format!("<{}-KEY-ID>", m.to_uppercase()), id));
    }
    run_section(&sections, 4, &paths, "alpha", &ids);
    // 7. The first bundle, published on the package filesystem.
    run_section(&sections, 7, &paths, "alpha", &[]);

    // 5. The guide's policyd.toml on alpha, with loopback ports for the test.
    let listener = free_port();
    let serve = free_port();
    let mut policyd = paths.rewrite(&guide_policyd_toml(), "alpha");
    policyd.push_str(&format!(
        "listen = \"127.0.0.1:{serve}\"\nwatch_interval = \"200ms\"\n\n[listener]\nlisten = \"127.0.0.1:{listener}\"\n\n[metrics]\nlisten = \"off\"\n"
    ));
    let config = paths.member("alpha").join("etc/tenet/policyd.toml");
    fs::write(&config, policyd).expect("write policyd.toml");
    let master = Policyd::start(&binary("tenet-policyd"), &config, "warn");
    // 8. What the Pacemaker group's agent does on the node that holds it.
    master.promote(&paths.package_fs().join("srv/tenet/bundle"));
    let address = format!("127.0.0.1:{serve}");
    for m in MEMBERS {
        assert_eq!(
            member_run(&paths, m, &address),
            1,
            "{m} on the first bundle"
        );
    }

    // 9. A new serial, flipped in; the master serves it without a restart.
    fs::write(
        paths.policy().join("motd.toml"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"serial two\\n\"\n",
    )
    .expect("change the policy");
    run_section(&sections, 9, &paths, "alpha", &[]);
    for m in MEMBERS {
        tenet_tests::fixture::wait_for(
            "the master to serve serial 2",
            tenet_tests::fixture::DEADLINE,
            || (member_run(&paths, m, &address) == 2).then_some(()),
        );
    }

    // 10. The next root, signed by two root keys, carried by serial 3.
    // The guide shows renewing and renewing-with-rotation as alternatives; the
    // plain renewal runs here.
    let mut renewal = sections.clone();
    renewal
        .entry(10)
        .or_default()
        .retain(|line| !line.contains("--rotate"));
    run_section(&renewal, 10, &paths, "alpha", &[]);
    let flip = sections
        .get(&9)
        .and_then(|lines| lines.iter().find(|l| l.starts_with("ln ")))
        .expect("section 9 flips the bundle link")
        .replace("bundles/2", "bundles/3");
    sh(&paths.rewrite(&flip, "alpha"));
    for m in MEMBERS {
        tenet_tests::fixture::wait_for(
            "the master to serve serial 3",
            tenet_tests::fixture::DEADLINE,
            || (member_run(&paths, m, &address) == 3).then_some(()),
        );
        let trust = fs::read_to_string(paths.member(m).join("var/lib/tenet/trust.toml"))
            .unwrap_or_else(|e| panic!("{m} remembers the root it trusts: {e}"));
        assert!(
            trust.contains("version = 2"),
            "{m} did not take root 2:\n{trust}"
        );
    }
}
