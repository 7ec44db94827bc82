//! `pkg`: a package installed (a version, when named) or absent, on members whose
//! root has a dpkg database (`ROOT/var/lib/dpkg/status`).
//!
//! Observed without the network: `dpkg-query --admindir=ROOT/var/lib/dpkg -W`.
//! Every change of a run goes into one transaction, made by the engine once every
//! `pkg` promise is planned ([`transaction`]): on the host's root one
//! `apt-get install` (local package files, `name=version`, and `name-` to remove),
//! which resolves dependencies; beneath a sandbox root `dpkg --root=ROOT --install`
//! for package files and `dpkg --root=ROOT --remove` for removals (dpkg refuses a
//! removal that would break a dependency). Beneath a sandbox root a package can
//! only come from a `source` file: the repositories belong to the host. A root
//! without a dpkg database (an RPM host) blocks the promise: dnf and rpm are not
//! supported yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tenet_policies::model::{AbsPath, PkgPromise, PkgState};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::exec::{self, Finished, Invocation};
use crate::fsops::Follow;

/// The dpkg database beneath the root.
const ADMINDIR: &str = "/var/lib/dpkg";
/// How long a query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a transaction may take (downloads, maintainer scripts).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(1800);

/// A package as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Not known, or removed (configuration files may remain).
    NotInstalled,
    /// Installed, at this version.
    Installed(String),
    /// Unpacked but not configured, half-installed, and the like: the two-letter
    /// state as `dpkg-query` prints it.
    Unfinished(String, String),
}

/// One package's part of the run's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PkgChange {
    /// Install from the repositories (a version pinned when given).
    Install {
        name: String,
        version: Option<String>,
    },
    /// Install from a package file (a host path, beneath the root).
    InstallFile { name: String, file: PathBuf },
    /// Remove.
    Remove { name: String },
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &PkgPromise) -> Result<Plan, PromiseError> {
    let admindir = cx
        .root
        .resolve(&abs(ADMINDIR)?, Follow::All)
        .map_err(PromiseError::from)?;
    if cx.root.lstat(&admindir.join("status")).is_err() {
        return Ok(Plan::Blocked(format!(
            "no dpkg database beneath the root ({ADMINDIR}/status); RPM hosts (dnf, rpm) are not supported yet"
        )));
    }
    let query = Invocation {
        argv: vec![
            "dpkg-query".to_string(),
            format!("--admindir={}", admindir.display()),
            "-W".to_string(),
            "-f=${db:Status-Abbrev}\\t${Version}\\n".to_string(),
            p.pkg.clone(),
        ],
        env: BTreeMap::new(),
        cwd: cx.root.base().to_path_buf(),
        timeout: QUERY_TIMEOUT,
        root: cx.root.base().to_path_buf(),
    };
    let f = exec::run(&query)
        .map_err(|e| PromiseError::Command(format!("dpkg-query {}: {e}", p.pkg)))?;
    let found =
        parse_query(&f).map_err(|e| PromiseError::Command(format!("dpkg-query {}: {e}", p.pkg)))?;
    let file = match &p.source {
        Some(s) => Some(cx.root.resolve(s, Follow::All)?),
        None => None,
    };
    Ok(plan(p, &found, file, cx.root.is_host_root()))
}

/// What the promise needs, from what the database says (pure).
pub(crate) fn plan(p: &PkgPromise, found: &Observed, file: Option<PathBuf>, host: bool) -> Plan {
    let name = p.pkg.clone();
    let change = match (&p.state, found) {
        (PkgState::Absent, Observed::NotInstalled) => return Plan::Kept,
        (PkgState::Absent, _) => (
            format!("removed package {name}"),
            PkgChange::Remove { name },
        ),
        (PkgState::Installed(want), Observed::Installed(have))
            if want.as_ref().is_none_or(|w| w == have) =>
        {
            return Plan::Kept;
        }
        (PkgState::Installed(want), found) => {
            let what = match want {
                Some(v) => format!("{name} {v}"),
                None => name.clone(),
            };
            let summary = match found {
                Observed::Installed(have) => format!("installed package {what} (was {have})"),
                Observed::Unfinished(state, have) => {
                    format!("installed package {what} (was {have}, left `{state}`)")
                }
                Observed::NotInstalled => format!("installed package {what}"),
            };
            let change = match file {
                Some(file) => PkgChange::InstallFile { name, file },
                None if !host => {
                    return Plan::Blocked(format!(
                        "beneath a root other than / a package is installed only from a `source` file; {name} names none"
                    ));
                }
                None => PkgChange::Install {
                    name,
                    version: want.clone(),
                },
            };
            (summary, change)
        }
    };
    Plan::repair(Change::new(change.0), Op::Package(change.1))
}

/// Reads `dpkg-query -W -f='${db:Status-Abbrev}\t${Version}\n' NAME`: exit 1 with
/// nothing on stdout is a package the database does not know.
pub(crate) fn parse_query(f: &Finished) -> Result<Observed, String> {
    match f.code {
        Some(1) if f.stdout.trim().is_empty() => return Ok(Observed::NotInstalled),
        Some(0) => {}
        _ => return Err(f.describe()),
    }
    let line = f.stdout.lines().next().unwrap_or("");
    let (abbrev, version) = line
        .split_once('\t')
        .ok_or_else(|| format!("unexpected answer `{line}`"))?;
    // Want, status and error flag: the status letter decides.
    let state = abbrev.trim_end();
    match state.chars().nth(1) {
        Some('i') if state.len() == 2 => Ok(Observed::Installed(version.to_string())),
        Some('n' | 'c') => Ok(Observed::NotInstalled),
        Some(_) => Ok(Observed::Unfinished(state.to_string(), version.to_string())),
        None => Err(format!("unexpected state `{abbrev}`")),
    }
}

/// The run's package transaction: the invocations that carry out `changes`.
pub(crate) fn transaction(cx: &Cx<'_>, changes: &[&PkgChange]) -> Vec<Invocation> {
    let base = cx.root.base().to_path_buf();
    let invocation = |argv: Vec<String>, env: &[(&str, &str)]| Invocation {
        argv,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        cwd: base.clone(),
        timeout: TRANSACTION_TIMEOUT,
        root: base.clone(),
    };
    if cx.root.is_host_root() {
        let mut argv: Vec<String> = [
            "apt-get",
            "install",
            "--yes",
            "--quiet",
            "--no-install-recommends",
        ]
        .map(str::to_string)
        .to_vec();
        for c in changes {
            argv.push(match c {
                PkgChange::Install {
                    name,
                    version: None,
                } => name.clone(),
                PkgChange::Install {
                    name,
                    version: Some(v),
                } => format!("{name}={v}"),
                PkgChange::InstallFile { file, .. } => file.display().to_string(),
                PkgChange::Remove { name } => format!("{name}-"),
            });
        }
        return vec![invocation(argv, &[("DEBIAN_FRONTEND", "noninteractive")])];
    }
    let root = format!("--root={}", base.display());
    let mut out = Vec::new();
    let files: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            PkgChange::InstallFile { file, .. } => Some(file.display().to_string()),
            _ => None,
        })
        .collect();
    if !files.is_empty() {
        let mut argv = vec!["dpkg".to_string(), root.clone(), "--install".to_string()];
        argv.extend(files);
        out.push(invocation(argv, &[]));
    }
    let removals: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            PkgChange::Remove { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if !removals.is_empty() {
        let mut argv = vec!["dpkg".to_string(), root, "--remove".to_string()];
        argv.extend(removals);
        out.push(invocation(argv, &[]));
    }
    out
}

/// Runs the transaction; the first failure fails every package in it.
pub(crate) fn carry_out(cx: &Cx<'_>, changes: &[&PkgChange]) -> Result<(), String> {
    for inv in transaction(cx, changes) {
        let program = inv.argv.first().cloned().unwrap_or_default();
        match exec::run(&inv) {
            Ok(f) if f.success() => {}
            Ok(f) => return Err(format!("{program} {}", f.describe())),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn abs(s: &str) -> Result<AbsPath, PromiseError> {
    AbsPath::parse(s).map_err(|e| PromiseError::Shared(format!("{s}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(code: i32, stdout: &str) -> Finished {
        Finished {
            code: Some(code),
            signal: None,
            timed_out: false,
            stdout: stdout.to_string(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn query_answers() {
        let q = |code, out: &str| parse_query(&finished(code, out));
        assert_eq!(q(0, "ii \t1.0\n"), Ok(Observed::Installed("1.0".into())));
        assert_eq!(q(0, "rc \t1.0\n"), Ok(Observed::NotInstalled));
        assert_eq!(q(0, "un \t\n"), Ok(Observed::NotInstalled));
        assert_eq!(q(1, ""), Ok(Observed::NotInstalled));
        assert_eq!(
            q(0, "iU \t1.0\n"),
            Ok(Observed::Unfinished("iU".into(), "1.0".into()))
        );
        assert_eq!(
            q(0, "iiR\t1.0\n"),
            Ok(Observed::Unfinished("iiR".into(), "1.0".into())),
            "an error flag means it needs reinstalling"
        );
        assert!(q(2, "").is_err());
        assert!(q(0, "garbage").is_err());
    }

    fn promise(state: PkgState, source: bool) -> PkgPromise {
        PkgPromise {
            pkg: "demo".into(),
            state,
            source: source.then(|| AbsPath::parse("/srv/demo.deb").unwrap()),
        }
    }

    fn changes(plan: Plan) -> Option<Vec<PkgChange>> {
        match plan {
            Plan::Kept => Some(Vec::new()),
            Plan::Repair { ops, .. } => Some(
                ops.into_iter()
                    .filter_map(|o| match o {
                        Op::Package(c) => Some(c),
                        _ => None,
                    })
                    .collect(),
            ),
            Plan::Blocked(_) => None,
        }
    }

    /// Each invocation of the transaction on `root` as one line.
    fn argvs(root: &std::path::Path, changes: &[PkgChange]) -> Vec<String> {
        let root = crate::fsops::Root::new(root).unwrap();
        let cx = Cx {
            root: &root,
            mode: super::super::Mode::Apply,
            diffs: super::super::Diffs::Skip,
            state_dir: None,
            source: None,
            stat_cache: None,
        };
        let refs: Vec<&PkgChange> = changes.iter().collect();
        transaction(&cx, &refs)
            .into_iter()
            .map(|i| i.argv.join(" "))
            .collect()
    }

    #[test]
    fn one_transaction_per_run() {
        let changes = [
            PkgChange::Install {
                name: "chrony".into(),
                version: None,
            },
            PkgChange::Install {
                name: "dce".into(),
                version: Some("1.2-4".into()),
            },
            PkgChange::InstallFile {
                name: "x".into(),
                file: PathBuf::from("/srv/x.deb"),
            },
            PkgChange::Remove {
                name: "telnetd".into(),
            },
        ];
        assert_eq!(
            argvs(std::path::Path::new("/"), &changes),
            [
                "apt-get install --yes --quiet --no-install-recommends chrony dce=1.2-4 /srv/x.deb telnetd-"
            ]
        );
        let sandbox = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(sandbox.path()).unwrap();
        assert_eq!(
            argvs(&base, &changes[2..]),
            [
                format!("dpkg --root={} --install /srv/x.deb", base.display()),
                format!("dpkg --root={} --remove telnetd", base.display()),
            ]
        );
    }

    #[test]
    fn package_plans() {
        let installed = Observed::Installed("1.0".into());
        let file = || Some(PathBuf::from("/r/srv/demo.deb"));
        let check = |p: &PkgPromise, found: &Observed, host: bool| {
            let f = p.source.as_ref().and_then(|_| file());
            changes(plan(p, found, f, host))
        };
        let any = promise(PkgState::Installed(None), false);
        let v1 = promise(PkgState::Installed(Some("1.0".into())), false);
        let v2 = promise(PkgState::Installed(Some("2.0".into())), false);
        let absent = promise(PkgState::Absent, false);
        assert_eq!(check(&any, &installed, true), Some(vec![]));
        assert_eq!(check(&v1, &installed, true), Some(vec![]));
        assert_eq!(
            check(&v2, &installed, true),
            Some(vec![PkgChange::Install {
                name: "demo".into(),
                version: Some("2.0".into())
            }])
        );
        assert_eq!(check(&absent, &Observed::NotInstalled, true), Some(vec![]));
        assert_eq!(
            check(&absent, &installed, false),
            Some(vec![PkgChange::Remove {
                name: "demo".into()
            }])
        );
        assert_eq!(
            check(&any, &Observed::NotInstalled, false),
            None,
            "beneath a sandbox only a source file can be installed"
        );
        assert_eq!(
            check(
                &promise(PkgState::Installed(None), true),
                &Observed::Unfinished("iU".into(), "1.0".into()),
                false
            ),
            Some(vec![PkgChange::InstallFile {
                name: "demo".into(),
                file: PathBuf::from("/r/srv/demo.deb")
            }])
        );
    }
}
