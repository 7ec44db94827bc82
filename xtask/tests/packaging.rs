//! What the packages carry agrees with the code: the generated man pages cover
//! every command and every unit's `Documentation=`, the shipped example
//! configurations parse with the daemons' own parsers, and code, units, adapters and
//! the package name one binary directory.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every command and subcommand of the three binaries, by page name.
fn page_names(cmd: &clap::Command, prefix: Option<&str>, out: &mut Vec<String>) {
    let name = match prefix {
        Some(p) => format!("{p}-{}", cmd.get_name()),
        None => cmd.get_name().to_owned(),
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page_names(sub, Some(&name), out);
    }
    out.push(name);
}

#[test]
fn every_command_has_a_page_and_every_binary_completions() {
    let out = tempfile::tempdir().expect("temp dir");
    xtask::generate(out.path()).expect("generate");
    let mut names = Vec::new();
    for cmd in xtask::commands() {
        page_names(&cmd, None, &mut names);
    }
    assert!(
        names.contains(&"tenet-agent-plan-show".to_owned()),
        "{names:?}"
    );
    for name in &names {
        let page = out.path().join(format!("man/man8/{name}.8"));
        let text = read(&page);
        assert!(
            text.contains(".TH ") && text.contains(&name.replace('-', "\\-")),
            "{}:\n{text}",
            page.display()
        );
    }
    for bin in ["tenet-agent", "tenet-policyd", "tenet-keys"] {
        for file in [
            format!("completions/bash/{bin}"),
            format!("completions/zsh/_{bin}"),
            format!("completions/fish/{bin}.fish"),
        ] {
            let text = read(&out.path().join(&file));
            assert!(text.contains(bin), "{file}");
        }
    }
    let bash = read(&out.path().join("completions/bash/tenet-agent"));
    assert!(bash.contains("--dry-run"), "run's options are completed");
}

#[test]
fn every_unit_documentation_page_is_generated() {
    let out = tempfile::tempdir().expect("temp dir");
    xtask::generate(out.path()).expect("generate");
    let mut seen = 0;
    for unit in ["tenet-agent.service", "tenet-policyd.service"] {
        let text = read(&repo().join("packaging/systemd").join(unit));
        for doc in text
            .lines()
            .filter_map(|l| l.strip_prefix("Documentation=man:"))
        {
            let (name, section) = doc
                .strip_suffix(')')
                .and_then(|d| d.split_once('('))
                .unwrap_or_else(|| panic!("{unit}: {doc}"));
            let page = out
                .path()
                .join(format!("man/man{section}/{name}.{section}"));
            assert!(page.is_file(), "{unit}: {} not generated", page.display());
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "both services document their man page");
}

#[test]
fn the_shipped_example_configurations_parse() {
    let examples = repo().join("packaging/examples");
    let agent = read(&examples.join("agent.toml"));
    let config = tenet_agent::config::Config::parse(&agent, Path::new("/etc/tenet"))
        .unwrap_or_else(|e| panic!("agent.toml: {e}"));
    assert_eq!(config.trusted_root, Path::new("/etc/tenet/root.toml"));
    let path = examples.join("policyd.toml");
    let policyd = tenet_policyd::config::Config::parse(&path, &read(&path))
        .unwrap_or_else(|e| panic!("policyd.toml: {e}"));
    assert_eq!(policyd.member, "alpha");
}

/// The default binary directory is /usr/sbin: the package installs there, the units
/// and every HA adapter name it, and policyd starts pushed runs from it.
#[test]
fn one_binary_directory_across_code_units_adapters_and_package() {
    assert_eq!(
        tenet_policyd::config::DEFAULT_AGENT,
        "/usr/sbin/tenet-agent"
    );
    let manifest = read(&repo().join("agent/Cargo.toml"));
    for bin in ["tenet-agent", "tenet-policyd", "tenet-keys"] {
        let asset = format!("[\"target/release/{bin}\", \"usr/sbin/{bin}\", \"755\"]");
        assert!(manifest.contains(&asset), "deb: {asset}");
        let asset = format!("source = \"target/release/{bin}\", dest = \"/usr/sbin/{bin}\"");
        assert!(manifest.contains(&asset), "rpm: {asset}");
    }
    let mut checked = 0;
    let mut named = 0;
    for entry in walk(&repo().join("packaging")) {
        let text = read(&entry);
        checked += 1;
        for word in text.split(|c: char| c.is_whitespace() || "\"'`=:;(){}".contains(c)) {
            if word.ends_with("/tenet-agent") || word.ends_with("/tenet-policyd") {
                assert!(
                    word.starts_with("/usr/sbin/")
                        || !word.starts_with('/')
                        || word.starts_with("/usr/lib/ocf/"),
                    "{}: {word}",
                    entry.display()
                );
                named += usize::from(word.starts_with("/usr/sbin/"));
            }
        }
    }
    assert!(checked > 15 && named > 15, "{checked} files, {named} paths");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.ends_with("generated") {
            continue;
        } else if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
