//! `tenet-keys members`: the HA engine's membership against the policy's cluster
//! members and the inventory; a proposal and the commands to sign it (see
//! [`crate::members`]). It holds and uses no key.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{MembersArgs, Out};
use crate::deployment::{self, Deployment};
use crate::error::MembersError;
use crate::error::PublishError;
use crate::members::{self, ClusterConfig, Comparison, Engine};
use crate::time::Time;
use crate::verify::{Clock, TrustState, TrustedRoot, verify_bundle};

/// What `members` found.
pub(crate) enum Outcome {
    /// The policy follows the engine.
    InSync,
    /// A proposal was made.
    Differs,
}

/// The engine's configured nodes, from its own command.
#[expect(
    clippy::disallowed_methods,
    reason = "tenet-keys has no exec module; the engine's query command runs once, stdin closed"
)]
fn engine_nodes(engine: Engine) -> Result<Vec<String>, MembersError> {
    let (program, args) = engine.command();
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let run = |p: &Path| {
        std::process::Command::new(p)
            .args(args)
            .stdin(Stdio::null())
            .output()
    };
    let mut result = run(Path::new(program));
    if engine == Engine::Powerha
        && matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        result = run(&Path::new(members::POWERHA_UTILITIES).join(program));
    }
    let fail = |reason: String| MembersError::Engine {
        engine: engine.name(),
        command: line.clone(),
        reason,
    };
    let out = result.map_err(|e| fail(format!("could not run: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "failed ({}): {}",
            out.status,
            stderr.lines().next().unwrap_or_default()
        )));
    }
    let nodes = engine.parse(&String::from_utf8_lossy(&out.stdout));
    if nodes.is_empty() {
        return Err(MembersError::NoNodes {
            engine: engine.name(),
            command: line,
        });
    }
    Ok(nodes)
}

/// The first cluster config among `files` (path, text).
fn find_config(
    what: &str,
    files: impl Iterator<Item = Result<(String, String), PublishError>>,
) -> Result<ClusterConfig, PublishError> {
    for f in files {
        let (path, text) = f?;
        if let Some(c) = ClusterConfig::parse(&path, &text).map_err(PublishError::Members)? {
            return Ok(c);
        }
    }
    Err(PublishError::Members(MembersError::NoCluster(
        what.to_string(),
    )))
}

/// The tree's cluster config (its `.toml` files in path order).
fn tree_config(tree: &Path) -> Result<ClusterConfig, PublishError> {
    let mut paths = Vec::new();
    for e in walkdir::WalkDir::new(tree).sort_by_file_name() {
        let e = e.map_err(|source| PublishError::Walk {
            path: tree.to_path_buf(),
            source,
        })?;
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "toml") {
            paths.push(e.into_path());
        }
    }
    let files = paths.into_iter().map(|p| {
        let text = String::from_utf8_lossy(&deployment::read_bytes(&p)?).into_owned();
        let rel = p.strip_prefix(tree).unwrap_or(&p);
        Ok((rel.to_string_lossy().into_owned(), text))
    });
    find_config(&tree.display().to_string(), files)
}

/// The bundle's cluster config and enrolled members, after verifying it.
fn bundle_config(
    bundle: &Path,
    root: &Path,
    now: Time,
) -> Result<(ClusterConfig, Vec<String>, u64), PublishError> {
    let bytes = deployment::read_bytes(root)?;
    let sigs = deployment::read_bytes(&crate::bundle::sig_path(root))?;
    let state = TrustState::new(TrustedRoot::bootstrap(&bytes, &sigs, None)?);
    let b = verify_bundle(&state, bundle, &Clock::new(now))?;
    let files = b
        .files()
        .iter()
        .filter(|f| f.path.ends_with(".toml"))
        .filter_map(|f| {
            let read = b.read_file(&f.path)?;
            Some(
                read.map(|bytes| (f.path.clone(), String::from_utf8_lossy(&bytes).into_owned()))
                    .map_err(PublishError::from),
            )
        })
        .collect::<Vec<_>>();
    let config = find_config(&bundle.display().to_string(), files.into_iter())?;
    let enrolled = b.members().iter().map(|m| m.name.clone()).collect();
    Ok((config, enrolled, b.manifest().serial))
}

pub(crate) fn members(
    a: &MembersArgs,
    now: Time,
    out: &mut Out<'_>,
) -> Result<Outcome, PublishError> {
    let (config, enrolled, source) = match (&a.policy, &a.bundle, &a.root) {
        (Some(tree), _, _) => {
            let enrolled = match &a.deployment {
                Some(d) => Some(
                    Deployment::open(d)?
                        .enrolled()?
                        .into_iter()
                        .map(|e| e.name)
                        .collect::<Vec<_>>(),
                ),
                None => None,
            };
            (tree_config(tree)?, enrolled, tree.display().to_string())
        }
        (None, Some(bundle), Some(root)) => {
            let (c, e, serial) = bundle_config(bundle, root, now)?;
            (
                c,
                Some(e),
                format!("{} (serial {serial})", bundle.display()),
            )
        }
        _ => {
            return Err(PublishError::Members(MembersError::NoCluster(
                "(neither --policy nor --bundle with --root)".to_string(),
            )));
        }
    };
    let nodes = engine_nodes(a.from)?;
    let c = members::compare(&nodes, &config, enrolled.as_deref());
    let tree = a
        .admin_tree
        .clone()
        .or_else(|| a.policy.clone())
        .unwrap_or_else(|| PathBuf::from("TREE"));
    let dep = a
        .admin_deployment
        .clone()
        .or_else(|| a.deployment.clone())
        .unwrap_or_else(|| PathBuf::from("DEPLOYMENT"));
    let proposal = members::propose(&config, &c, a.from);
    let written = match &a.out {
        Some(dir) => write_proposal(
            dir,
            &config,
            &proposal,
            c.added.is_empty() && c.removed.is_empty(),
        )?,
        None => None,
    };
    out.json(
        "members",
        serde_json::json!({
            "engine": a.from.name(),
            "nodes": nodes,
            "source": source,
            "cluster_config": config.path,
            "in_sync": c.in_sync(),
            "added": c.added,
            "removed": c.removed,
            "unenrolled": c.unenrolled,
            "revoke": c.revoke,
            "unusable": c.unusable,
            "proposal": written.as_ref().map(|p| p.display().to_string()),
        }),
    );
    let text = report(
        a.from,
        &nodes,
        &source,
        &config,
        &c,
        written.as_deref(),
        &tree,
        &dep,
    );
    let _ = out.text().write_all(text.as_bytes());
    Ok(if c.in_sync() {
        Outcome::InSync
    } else {
        Outcome::Differs
    })
}

/// Writes DIR/FILE (the proposed config) and DIR/FILE.diff; with no member to add or
/// remove, removes both (a stale proposal must not be signed later).
fn write_proposal(
    dir: &Path,
    config: &ClusterConfig,
    proposal: &str,
    unchanged: bool,
) -> Result<Option<PathBuf>, PublishError> {
    let name = Path::new(&config.path)
        .file_name()
        .map_or_else(|| PathBuf::from("cluster.toml"), PathBuf::from);
    let file = dir.join(&name);
    let diff_path = dir.join(format!("{}.diff", name.display()));
    if unchanged {
        for p in [&file, &diff_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PublishError::Write {
                        path: p.clone(),
                        source,
                    });
                }
            }
        }
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(|source| PublishError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let diff = similar::TextDiff::from_lines(config.text.as_str(), proposal)
        .unified_diff()
        .header(&format!("a/{}", config.path), &format!("b/{}", config.path))
        .to_string();
    deployment::write_replace(&file, proposal.as_bytes(), 0o644)?;
    deployment::write_replace(&diff_path, diff.as_bytes(), 0o644)?;
    Ok(Some(file))
}

/// A node name as printed: as is when it is a valid member name, else quoted and
/// escaped (the engine's output may hold anything, control characters included).
fn shown(name: &str) -> String {
    if crate::manifest::is_valid_name(name) {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

/// `s` as one POSIX shell word (quoted only when it needs to be).
fn word(s: &str) -> String {
    tenet_policies::template::shell_quote(s).into_owned()
}

/// What differs and the administrator's commands, in order.
#[expect(
    clippy::too_many_arguments,
    reason = "one report from the command's parts"
)]
fn report(
    engine: Engine,
    nodes: &[String],
    source: &str,
    config: &ClusterConfig,
    c: &Comparison,
    written: Option<&Path>,
    tree: &Path,
    dep: &Path,
) -> String {
    let e = engine.name();
    let shown_nodes: Vec<String> = nodes.iter().map(|n| shown(n)).collect();
    let mut s = format!("{e} nodes: {}\n", shown_nodes.join(" "));
    if c.in_sync() {
        s.push_str(&format!(
            "the cluster members of {source} ({}) and the inventory follow the {e} membership; nothing to sign\n",
            config.path
        ));
        return s;
    }
    let line = |s: &mut String, what: &str, v: &[String]| {
        if !v.is_empty() {
            s.push_str(&format!("  {what}: {}\n", v.join(" ")));
        }
    };
    s.push_str(&format!("the {e} membership differs from {source}:\n"));
    line(&mut s, "joined the cluster, not a member", &c.added);
    line(&mut s, "left the cluster, still a member", &c.removed);
    line(&mut s, "a member with no enrolled key", &c.unenrolled);
    let unusable: Vec<String> = c.unusable.iter().map(|n| shown(n)).collect();
    line(
        &mut s,
        "not usable as member names (add by hand)",
        &unusable,
    );
    // Every path in a command is one shell word: the administrator pastes these
    // lines, and a policy file may be named anything the manifest allows.
    let t = tree.display();
    let d = word(&dep.display().to_string());
    let cfg = &config.path;
    let tree_cfg = word(&format!("{t}/{cfg}"));
    let t = word(&t.to_string());
    s.push_str("\nNothing was signed. As an administrator, on the host with the deployment:\n");
    let mut n = 0;
    let mut step = |s: &mut String, text: String| {
        n += 1;
        s.push_str(&format!("  {n}. {text}\n"));
    };
    if !c.added.is_empty() || !c.removed.is_empty() {
        match written {
            Some(p) => step(
                &mut s,
                format!(
                    "review the proposal and take it:\n       diff -u {tree_cfg} {p}\n       cp {p} {tree_cfg}",
                    p = word(&p.display().to_string()),
                ),
            ),
            None => step(
                &mut s,
                format!(
                    "in {tree_cfg}, add or remove the members above (--out DIR writes a proposal)"
                ),
            ),
        }
    }
    for m in &c.revoke {
        step(&mut s, format!("tenet-keys revoke {d} --member {m}"));
    }
    for m in &c.unenrolled {
        step(
            &mut s,
            format!(
                "tenet-keys join-token {d} --member {m}   # hand the token to {m}'s operator, who runs:\n       tenet-agent join MASTER --token TOKEN --trusted-root ROOT --expect-fingerprint FP\n       then: tenet-keys approve {d} {m} --join-dir JOIN_DIR"
            ),
        );
    }
    step(
        &mut s,
        format!(
            "tenet-keys sign {t} --deployment {d} --out BUNDLE   # the next serial; publish BUNDLE as usual"
        ),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed commands are pasted into a shell on the administrator's host: a
    /// policy file's name (any name the manifest allows, `$(...)` and `;` included)
    /// and the paths around it must reach each command as one word, never as shell
    /// syntax.
    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "the test runs the printed commands through a real shell"
    )]
    fn printed_commands_take_each_path_as_one_word() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = "sites/$(touch pwned);x y.toml";
        let tree = tmp.path().join("policy tree");
        let out = tmp.path().join("out");
        std::fs::create_dir_all(tree.join("sites")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let written = out.join("$(touch pwned);x y.toml");
        std::fs::write(tree.join(cfg), "old\n").unwrap();
        std::fs::write(&written, "new\n").unwrap();
        let config = ClusterConfig {
            path: cfg.to_string(),
            text: "old\n".to_string(),
            policy_server: None,
            members: Vec::new(),
            packages: Vec::new(),
        };
        let c = Comparison {
            added: vec!["gamma".to_string()],
            revoke: vec!["beta".to_string()],
            unenrolled: vec!["gamma".to_string()],
            ..Comparison::default()
        };
        let dep = tmp.path().join("dep; touch pwned2");
        let text = report(
            Engine::Pacemaker,
            &["alpha".to_string(), "gamma".to_string()],
            "the bundle",
            &config,
            &c,
            Some(&written),
            &tree,
            &dep,
        );
        // Each printed command, run by a shell (tenet-keys is not on its PATH: the
        // line fails, and only what the shell makes of it counts).
        let mut ran = 0;
        for line in text.lines().map(str::trim) {
            let line = line
                .split_once(". ")
                .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                .map_or(line, |(_, rest)| rest);
            let line = line.split("   #").next().unwrap_or(line);
            if !["diff -u ", "cp ", "tenet-keys "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                continue;
            }
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(line)
                .current_dir(tmp.path())
                .env("PATH", "/usr/bin:/bin")
                .status()
                .unwrap();
            assert!(status.code().is_some(), "{line}");
            ran += 1;
        }
        assert!(ran >= 4, "{text}");
        assert!(
            !tmp.path().join("pwned").exists(),
            "a file name ran as a command:\n{text}"
        );
        assert!(
            !tmp.path().join("pwned2").exists(),
            "a path ran as a command:\n{text}"
        );
        assert_eq!(
            std::fs::read_to_string(tree.join(cfg)).unwrap(),
            "new\n",
            "{text}"
        );
    }
}
