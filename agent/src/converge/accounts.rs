//! The user and group databases as `user` and `group` promises observe them:
//! `ROOT/etc/passwd`, `group` and `shadow` read through the [`Root`] (never
//! through NSS, which would answer for the host, not the root), and the shadow
//! tools (`useradd`, `usermod`, `userdel`, `groupadd`, `groupmod`, `groupdel`)
//! that change them, with `--prefix ROOT` beneath a sandbox so the tools edit
//! that tree's files (and read its `login.defs`) without a chroot.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use tenet_policies::model::AbsPath;

use super::{Cx, PromiseError};
use crate::exec::Invocation;
use crate::fsops::{Follow, Root};

/// How long a shadow tool may take (it waits for the database lock).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// One `passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
    pub(crate) shell: String,
}

/// One `group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub(crate) gid: u32,
    pub(crate) members: Vec<String>,
}

/// The databases beneath a root, as found; a missing file is an empty database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Accounts {
    pub(crate) users: BTreeMap<String, PasswdEntry>,
    pub(crate) groups: BTreeMap<String, GroupEntry>,
    /// Each user's password field from `shadow`; empty when `shadow` is missing.
    pub(crate) passwords: BTreeMap<String, String>,
}

impl Accounts {
    /// Reads `passwd`, `group` and (when `shadow` is true) `shadow` beneath the root.
    pub(crate) fn read(root: &Root, shadow: bool) -> Result<Self, PromiseError> {
        let mut out = Self::default();
        for fields in lines(root, "/etc/passwd")? {
            if let [name, _, uid, gid, _, home, shell, ..] = fields.as_slice()
                && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
            {
                out.users.insert(
                    name.clone(),
                    PasswdEntry {
                        uid,
                        gid,
                        home: home.clone(),
                        shell: shell.clone(),
                    },
                );
            }
        }
        for fields in lines(root, "/etc/group")? {
            if let [name, _, gid, members, ..] = fields.as_slice()
                && let Ok(gid) = gid.parse()
            {
                let members = members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                out.groups.insert(name.clone(), GroupEntry { gid, members });
            }
        }
        if shadow {
            for fields in lines(root, "/etc/shadow")? {
                if let [name, password, ..] = fields.as_slice() {
                    out.passwords.insert(name.clone(), password.clone());
                }
            }
        }
        Ok(out)
    }

    /// The gid of the group called `name`.
    pub(crate) fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.get(name).map(|g| g.gid)
    }

    /// The groups that list `user` as a member, sorted.
    pub(crate) fn groups_of(&self, user: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, g)| g.members.iter().any(|m| m == user))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// A shadow tool run on the root: `--prefix ROOT` first beneath a sandbox.
pub(crate) fn tool(cx: &Cx<'_>, program: &str, args: Vec<String>) -> Invocation {
    let base = cx.root.base().to_path_buf();
    let mut argv = vec![program.to_string()];
    if !cx.root.is_host_root() {
        argv.push("--prefix".to_string());
        argv.push(base.display().to_string());
    }
    argv.extend(args);
    Invocation {
        argv,
        env: BTreeMap::new(),
        cwd: base.clone(),
        timeout: TOOL_TIMEOUT,
        root: base,
    }
}

/// The colon-separated fields of each non-empty, non-comment line of a database.
fn lines(root: &Root, path: &str) -> Result<Vec<Vec<String>>, PromiseError> {
    let abs = AbsPath::parse(path).map_err(|e| PromiseError::Shared(format!("{path}: {e}")))?;
    let host = root.resolve(&abs, Follow::All)?;
    let bytes = match root.read_file(&host) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PromiseError::io(&path, e)),
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}
