//! `pkg`: a package installed (a version, when named) or absent, through the
//! package database beneath the root, which decides the tools: a dpkg database
//! (`ROOT/var/lib/dpkg/status`) means dpkg and apt; otherwise an rpm database
//! (`rpmdb.sqlite`, `Packages` or `Packages.db` in `ROOT/var/lib/rpm` or
//! `ROOT/usr/lib/sysimage/rpm`) means rpm and dnf; a root with neither blocks the
//! promise ([`Backend::detect`]).
//!
//! Observed without the network: `dpkg-query --admindir=ROOT/var/lib/dpkg -W`, or
//! `rpm --root=ROOT --dbpath=DB -q --qf ...`. A `version` is compared with the one
//! the tool prints: dpkg's `[EPOCH:]UPSTREAM[-REVISION]`, rpm's
//! `[EPOCH:]VERSION-RELEASE`, where an epoch of 0 may be written or left out; on
//! rpm a version without a release never matches, so it blocks the promise. When
//! rpm has several instances of a package (multilib, kernels), one at the version
//! is enough.
//!
//! Every change of a run goes into one transaction, made by the engine once every
//! `pkg` promise is planned ([`transaction`]). On the host's root it is one
//! `apt-get install` (package files, `name=version`, and `name-` to remove), or
//! `dnf install` (package files, `name-version`) then `dnf remove`; both resolve
//! dependencies. Beneath a sandbox root it is `dpkg --root=ROOT --install` or
//! `rpm --root=ROOT -U` for the package files, then `dpkg --root=ROOT --remove` or
//! `rpm --root=ROOT -e` for the removals (both refuse a removal that would break a
//! dependency). Beneath a sandbox root a package can only come from a `source`
//! file: the repositories belong to the host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tenet_policies::model::{AbsPath, PkgPromise, PkgState};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::exec::{self, Finished, Invocation};
use crate::fsops::{Follow, Root};

/// The dpkg database beneath the root.
const ADMINDIR: &str = "/var/lib/dpkg";
/// Where an rpm database may be beneath the root, in the order looked at.
const RPM_DBPATHS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
/// The files that make a directory an rpm database: sqlite, Berkeley DB, ndb. A
/// directory without one is not a database (Debian's rpm package ships an empty
/// `/var/lib/rpm`), and rpm would create one there when asked.
const RPM_DBFILES: [&str; 3] = ["rpmdb.sqlite", "Packages", "Packages.db"];
/// Why a root with neither database blocks every `pkg` promise.
const NO_DATABASE: &str = "no package database beneath the root: neither dpkg's (/var/lib/dpkg/status) nor rpm's (rpmdb.sqlite, Packages or Packages.db in /var/lib/rpm or /usr/lib/sysimage/rpm)";
/// What `rpm -q` prints of each installed instance: the name, a tab, and
/// `EPOCH:VERSION-RELEASE` (rpm reads the escapes).
const RPM_FORMAT: &str = "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n";
/// How long a query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a transaction may take (downloads, maintainer scripts).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(1800);

/// The package database beneath the root, which decides the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// dpkg's database directory (a host path beneath the root): dpkg and apt.
    Dpkg { admindir: PathBuf },
    /// rpm's database directory as a path beneath the root, which is how rpm reads
    /// `--dbpath` next to `--root`: rpm and dnf.
    Rpm { dbpath: PathBuf },
}

impl Backend {
    /// The database beneath the root: dpkg's when it has a status file, else the
    /// first rpm database directory holding a database file, else none. Paths are
    /// resolved beneath the root, so a link cannot send a tool outside it.
    pub(crate) fn detect(root: &Root) -> Result<Option<Self>, PromiseError> {
        let admindir = root.resolve(&abs(ADMINDIR)?, Follow::All)?;
        if root.lstat(&admindir.join("status")).is_ok() {
            return Ok(Some(Self::Dpkg { admindir }));
        }
        for candidate in RPM_DBPATHS {
            let dir = root.resolve(&abs(candidate)?, Follow::All)?;
            if RPM_DBFILES.iter().any(|f| root.lstat(&dir.join(f)).is_ok()) {
                return Ok(Some(Self::Rpm {
                    dbpath: root.policy_path(&dir),
                }));
            }
        }
        Ok(None)
    }
}

/// A package as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Not known, or removed (configuration files may remain).
    NotInstalled,
    /// Installed, at these versions (rpm may hold several instances of a name).
    Installed(Vec<String>),
    /// Unpacked but not configured, half-installed, and the like: the two-letter
    /// state as `dpkg-query` prints it (rpm has no such states).
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
    let Some(backend) = Backend::detect(cx.root)? else {
        return Ok(Plan::Blocked(NO_DATABASE.to_string()));
    };
    let found = observe(cx, &backend, &p.pkg)?;
    let file = match &p.source {
        Some(s) => Some(cx.root.resolve(s, Follow::All)?),
        None => None,
    };
    Ok(plan(p, &backend, &found, file, cx.root.is_host_root()))
}

/// What the root's database says of package `name`: one query, no network.
fn observe(cx: &Cx<'_>, backend: &Backend, name: &str) -> Result<Observed, PromiseError> {
    let base = cx.root.base();
    let argv = match backend {
        Backend::Dpkg { admindir } => vec![
            "dpkg-query".to_string(),
            format!("--admindir={}", admindir.display()),
            "-W".to_string(),
            "-f=${db:Status-Abbrev}\\t${Version}\\n".to_string(),
            name.to_string(),
        ],
        Backend::Rpm { dbpath } => vec![
            "rpm".to_string(),
            format!("--root={}", base.display()),
            format!("--dbpath={}", dbpath.display()),
            "-q".to_string(),
            "--qf".to_string(),
            RPM_FORMAT.to_string(),
            name.to_string(),
        ],
    };
    let program = argv.first().cloned().unwrap_or_default();
    let query = Invocation {
        argv,
        env: BTreeMap::new(),
        cwd: base.to_path_buf(),
        timeout: QUERY_TIMEOUT,
        root: base.to_path_buf(),
    };
    let f =
        exec::run(&query).map_err(|e| PromiseError::Command(format!("{program} {name}: {e}")))?;
    match backend {
        Backend::Dpkg { .. } => parse_dpkg_query(&f),
        Backend::Rpm { .. } => parse_rpm_query(&f, name),
    }
    .map_err(|e| PromiseError::Command(format!("{program} {name}: {e}")))
}

/// What the promise needs, from what the database says (pure).
pub(crate) fn plan(
    p: &PkgPromise,
    backend: &Backend,
    found: &Observed,
    file: Option<PathBuf>,
    host: bool,
) -> Plan {
    let name = p.pkg.clone();
    if let (Backend::Rpm { .. }, PkgState::Installed(Some(v))) = (backend, &p.state)
        && !v.contains('-')
    {
        return Plan::Blocked(format!(
            "beneath an rpm database a version is VERSION-RELEASE as rpm prints it (EPOCH: first, unless 0); `{v}` names no release"
        ));
    }
    let change = match (&p.state, found) {
        (PkgState::Absent, Observed::NotInstalled) => return Plan::Kept,
        (PkgState::Absent, _) => (
            format!("removed package {name}"),
            PkgChange::Remove { name },
        ),
        (PkgState::Installed(want), Observed::Installed(have))
            if want
                .as_ref()
                .is_none_or(|w| have.iter().any(|h| same_version(w, h))) =>
        {
            return Plan::Kept;
        }
        (PkgState::Installed(want), found) => {
            let what = match want {
                Some(v) => format!("{name} {v}"),
                None => name.clone(),
            };
            let summary = match found {
                Observed::Installed(have) => {
                    format!("installed package {what} (was {})", have.join(", "))
                }
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

/// Whether two versions are the same as the tools print them: exactly, except
/// that an epoch of 0 may be written (`0:1.0-1`) or left out (`1.0-1`).
fn same_version(a: &str, b: &str) -> bool {
    let bare = |v: &str| v.strip_prefix("0:").unwrap_or(v).to_string();
    bare(a) == bare(b)
}

/// Reads `dpkg-query -W -f='${db:Status-Abbrev}\t${Version}\n' NAME`: exit 1 with
/// nothing on stdout is a package the database does not know.
pub(crate) fn parse_dpkg_query(f: &Finished) -> Result<Observed, String> {
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
        Some('i') if state.len() == 2 => Ok(Observed::Installed(vec![version.to_string()])),
        Some('n' | 'c') => Ok(Observed::NotInstalled),
        Some(_) => Ok(Observed::Unfinished(state.to_string(), version.to_string())),
        None => Err(format!("unexpected state `{abbrev}`")),
    }
}

/// Reads `rpm -q --qf '%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n' NAME`: a line
/// per installed instance, of which only those named exactly `name` count (rpm
/// also reads `NAME` as `name-version`). Exit 1 with `package NAME is not
/// installed` is a package the database does not know, but only with nothing on
/// stderr other than warnings: rpm says the same, with exit 1, after its `error:`
/// lines when it cannot open the database.
pub(crate) fn parse_rpm_query(f: &Finished, name: &str) -> Result<Observed, String> {
    let quiet = f
        .stderr
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with("warning:"));
    let unknown = format!("package {name} is not installed");
    match f.code {
        Some(0) => {}
        Some(1) if quiet && f.stdout.lines().all(|l| l.trim() == unknown) => {
            return Ok(Observed::NotInstalled);
        }
        _ => return Err(f.describe()),
    }
    let mut versions = Vec::new();
    for line in f.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let (n, v) = line
            .split_once('\t')
            .ok_or_else(|| format!("unexpected answer `{line}`"))?;
        if n == name {
            versions.push(v.strip_prefix("0:").unwrap_or(v).to_string());
        }
    }
    Ok(if versions.is_empty() {
        Observed::NotInstalled
    } else {
        Observed::Installed(versions)
    })
}

/// The run's package transaction on `backend`: the invocations that carry out
/// `changes`, in order.
pub(crate) fn transaction(
    cx: &Cx<'_>,
    backend: &Backend,
    changes: &[&PkgChange],
) -> Vec<Invocation> {
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
    let words = |w: &[&str]| w.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    let files: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            PkgChange::InstallFile { file, .. } => Some(file.display().to_string()),
            _ => None,
        })
        .collect();
    let removals: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            PkgChange::Remove { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    match (backend, cx.root.is_host_root()) {
        (Backend::Dpkg { .. }, true) => {
            let mut argv = words(&[
                "apt-get",
                "install",
                "--yes",
                "--quiet",
                "--no-install-recommends",
            ]);
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
            out.push(invocation(argv, &[("DEBIAN_FRONTEND", "noninteractive")]));
        }
        (Backend::Rpm { .. }, true) => {
            let installs: Vec<String> = changes
                .iter()
                .filter_map(|c| match c {
                    PkgChange::Install {
                        name,
                        version: None,
                    } => Some(name.clone()),
                    PkgChange::Install {
                        name,
                        version: Some(v),
                    } => Some(format!("{name}-{v}")),
                    PkgChange::InstallFile { file, .. } => Some(file.display().to_string()),
                    PkgChange::Remove { .. } => None,
                })
                .collect();
            if !installs.is_empty() {
                let mut argv = words(&[
                    "dnf",
                    "install",
                    "--assumeyes",
                    "--quiet",
                    "--setopt=install_weak_deps=False",
                ]);
                argv.extend(installs);
                out.push(invocation(argv, &[]));
            }
            if !removals.is_empty() {
                let mut argv = words(&[
                    "dnf",
                    "remove",
                    "--assumeyes",
                    "--quiet",
                    "--setopt=clean_requirements_on_remove=False",
                ]);
                argv.extend(removals);
                out.push(invocation(argv, &[]));
            }
        }
        (Backend::Dpkg { .. }, false) => {
            let root = format!("--root={}", base.display());
            if !files.is_empty() {
                let mut argv = vec!["dpkg".to_string(), root.clone(), "--install".to_string()];
                argv.extend(files);
                out.push(invocation(argv, &[]));
            }
            if !removals.is_empty() {
                let mut argv = vec!["dpkg".to_string(), root, "--remove".to_string()];
                argv.extend(removals);
                out.push(invocation(argv, &[]));
            }
        }
        (Backend::Rpm { dbpath }, false) => {
            let rpm = vec![
                "rpm".to_string(),
                format!("--root={}", base.display()),
                format!("--dbpath={}", dbpath.display()),
            ];
            if !files.is_empty() {
                // A pinned older version is what the policy asks for, and a package
                // file of the installed version is installed again, as dpkg does.
                let mut argv = rpm.clone();
                argv.extend(words(&["-U", "--oldpackage", "--replacepkgs"]));
                argv.extend(files);
                out.push(invocation(argv, &[]));
            }
            if !removals.is_empty() {
                // Every instance of the name (multilib) goes.
                let mut argv = rpm;
                argv.extend(words(&["-e", "--allmatches"]));
                argv.extend(removals);
                out.push(invocation(argv, &[]));
            }
        }
    }
    out
}

/// Runs the transaction; the first failure fails every package in it.
pub(crate) fn carry_out(cx: &Cx<'_>, changes: &[&PkgChange]) -> Result<(), String> {
    let backend = Backend::detect(cx.root)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| NO_DATABASE.to_string())?;
    for inv in transaction(cx, &backend, changes) {
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

    fn finished(code: i32, stdout: &str, stderr: &str) -> Finished {
        Finished {
            code: Some(code),
            signal: None,
            timed_out: false,
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            elapsed: Duration::ZERO,
        }
    }

    fn installed(v: &str) -> Observed {
        Observed::Installed(vec![v.to_string()])
    }

    fn dpkg() -> Backend {
        Backend::Dpkg {
            admindir: PathBuf::from("/var/lib/dpkg"),
        }
    }

    fn rpm() -> Backend {
        Backend::Rpm {
            dbpath: PathBuf::from("/var/lib/rpm"),
        }
    }

    #[test]
    fn dpkg_query_answers() {
        let q = |code, out: &str| parse_dpkg_query(&finished(code, out, ""));
        assert_eq!(q(0, "ii \t1.0\n"), Ok(installed("1.0")));
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

    #[test]
    fn rpm_query_answers() {
        let q = |code, out: &str, err: &str| parse_rpm_query(&finished(code, out, err), "demo");
        assert_eq!(q(0, "demo\t0:1.0-1\n", ""), Ok(installed("1.0-1")));
        assert_eq!(
            q(0, "demo\t2:1.0-1.el9\n", ""),
            Ok(installed("2:1.0-1.el9"))
        );
        assert_eq!(
            q(0, "demo\t0:1.0-1\ndemo\t0:1.1-1\n", ""),
            Ok(Observed::Installed(vec!["1.0-1".into(), "1.1-1".into()])),
            "every instance"
        );
        assert_eq!(
            q(0, "demo-devel\t0:1.0-1\n", ""),
            Ok(Observed::NotInstalled),
            "only the exact name counts"
        );
        assert_eq!(
            q(1, "package demo is not installed\n", ""),
            Ok(Observed::NotInstalled)
        );
        assert_eq!(
            q(
                1,
                "package demo is not installed\n",
                "warning: Found bdb_ro Packages database while attempting sqlite backend: using bdb_ro backend.\n"
            ),
            Ok(Observed::NotInstalled)
        );
        let broken = q(
            1,
            "package demo is not installed\n",
            "error: sqlite failure: file is not a database\nerror: cannot open Packages database in /r/var/lib/rpm\n",
        );
        assert_eq!(
            broken,
            Err(
                "exited with status 1: error: cannot open Packages database in /r/var/lib/rpm"
                    .into()
            ),
            "a database rpm cannot open is an error, not an absent package"
        );
        assert!(q(1, "something else\n", "").is_err());
        assert!(q(0, "garbage\n", "").is_err());
        assert!(q(2, "", "").is_err());
    }

    #[test]
    fn versions_match_exactly_but_for_a_zero_epoch() {
        assert!(same_version("1.0-1", "1.0-1"));
        assert!(same_version("0:1.0-1", "1.0-1"));
        assert!(same_version("1.0-1", "0:1.0-1"));
        assert!(!same_version("1:1.0-1", "1.0-1"));
        assert!(!same_version("1.0", "1.0-1"));
        assert!(!same_version("1.0-1", "1.0-1.el9"));
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
    fn argvs(root: &std::path::Path, backend: &Backend, changes: &[PkgChange]) -> Vec<String> {
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
        transaction(&cx, backend, &refs)
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
        let host = std::path::Path::new("/");
        assert_eq!(
            argvs(host, &dpkg(), &changes),
            [
                "apt-get install --yes --quiet --no-install-recommends chrony dce=1.2-4 /srv/x.deb telnetd-"
            ]
        );
        assert_eq!(
            argvs(host, &rpm(), &changes),
            [
                "dnf install --assumeyes --quiet --setopt=install_weak_deps=False chrony dce-1.2-4 /srv/x.deb",
                "dnf remove --assumeyes --quiet --setopt=clean_requirements_on_remove=False telnetd",
            ]
        );
        assert_eq!(
            argvs(host, &rpm(), &changes[3..]),
            ["dnf remove --assumeyes --quiet --setopt=clean_requirements_on_remove=False telnetd"],
            "no empty install"
        );
        let sandbox = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(sandbox.path()).unwrap();
        assert_eq!(
            argvs(&base, &dpkg(), &changes[2..]),
            [
                format!("dpkg --root={} --install /srv/x.deb", base.display()),
                format!("dpkg --root={} --remove telnetd", base.display()),
            ]
        );
        let sysimage = Backend::Rpm {
            dbpath: PathBuf::from("/usr/lib/sysimage/rpm"),
        };
        let rpm = format!(
            "rpm --root={} --dbpath=/usr/lib/sysimage/rpm",
            base.display()
        );
        assert_eq!(
            argvs(&base, &sysimage, &changes[2..]),
            [
                format!("{rpm} -U --oldpackage --replacepkgs /srv/x.deb"),
                format!("{rpm} -e --allmatches telnetd"),
            ]
        );
        assert_eq!(
            argvs(&base, &sysimage, &changes[2..3]).len(),
            1,
            "no empty removal"
        );
    }

    #[test]
    fn package_plans() {
        let file = || Some(PathBuf::from("/r/srv/demo.deb"));
        let check = |p: &PkgPromise, found: &Observed, host: bool| {
            let f = p.source.as_ref().and_then(|_| file());
            changes(plan(p, &dpkg(), found, f, host))
        };
        let any = promise(PkgState::Installed(None), false);
        let v1 = promise(PkgState::Installed(Some("1.0".into())), false);
        let v2 = promise(PkgState::Installed(Some("2.0".into())), false);
        let absent = promise(PkgState::Absent, false);
        assert_eq!(check(&any, &installed("1.0"), true), Some(vec![]));
        assert_eq!(check(&v1, &installed("1.0"), true), Some(vec![]));
        assert_eq!(
            check(&v2, &installed("1.0"), true),
            Some(vec![PkgChange::Install {
                name: "demo".into(),
                version: Some("2.0".into())
            }])
        );
        assert_eq!(check(&absent, &Observed::NotInstalled, true), Some(vec![]));
        assert_eq!(
            check(&absent, &installed("1.0"), false),
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

    #[test]
    fn rpm_package_plans() {
        let check = |want: &str, found: &Observed| {
            let p = promise(PkgState::Installed(Some(want.into())), false);
            plan(&p, &rpm(), found, None, true)
        };
        let two = Observed::Installed(vec!["1.0-1".into(), "2.0-1".into()]);
        assert!(
            matches!(check("2.0-1", &two), Plan::Kept),
            "one instance is enough"
        );
        assert!(matches!(check("0:2.0-1", &two), Plan::Kept));
        match check("3.0-1", &two) {
            Plan::Repair { changes, .. } => assert_eq!(
                changes[0].summary,
                "installed package demo 3.0-1 (was 1.0-1, 2.0-1)"
            ),
            other => panic!("{other:?}"),
        }
        match check("2.0", &two) {
            Plan::Blocked(why) => assert!(why.contains("`2.0` names no release"), "{why}"),
            other => panic!("a version without a release can never match: {other:?}"),
        }
        assert!(
            matches!(
                plan(
                    &promise(PkgState::Installed(Some("2.0".into())), false),
                    &dpkg(),
                    &installed("2.0"),
                    None,
                    true
                ),
                Plan::Kept
            ),
            "dpkg versions need no revision"
        );
    }
}
