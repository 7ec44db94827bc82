//! `hostname`: the member's hostname, and with `persist` also `/etc/hostname`.
//!
//! With the host's own root the kernel's hostname is set; beneath any other root
//! the kernel's is modelled by the file `/proc/sys/kernel/hostname` in that root,
//! so a sandbox never changes the machine's name.

use std::io;
use std::path::Path;

use tenet_policies::model::{AbsPath, HostnamePromise};

use super::{Change, Cx, Op, Plan, PromiseError};
use crate::fsops::{Attrs, Follow, Root};

const KERNEL: &str = "/proc/sys/kernel/hostname";
const PERSISTENT: &str = "/etc/hostname";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    kernel: String,
    persistent: Option<String>,
}

pub(crate) fn evaluate(cx: &Cx<'_>, p: &HostnamePromise<String>) -> Result<Plan, PromiseError> {
    if !valid(&p.name) {
        return Err(PromiseError::BadHostname(p.name.clone()));
    }
    let kernel_path = abs(KERNEL)?;
    let persistent_path = abs(PERSISTENT)?;
    let kernel = if cx.root.is_host_root() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    } else {
        read_name(cx.root, &cx.root.resolve(&kernel_path, Follow::All)?)
            .map_err(|e| PromiseError::io(&KERNEL, e))?
            .unwrap_or_default()
    };
    let persistent_host = cx.root.resolve(&persistent_path, Follow::All)?;
    let persistent = if p.persist {
        read_name(cx.root, &persistent_host).map_err(|e| PromiseError::io(&PERSISTENT, e))?
    } else {
        None
    };
    let found = Observed { kernel, persistent };
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    if found.kernel != p.name {
        changes.push(Change::new(format!(
            "set hostname {} (was {})",
            p.name,
            if found.kernel.is_empty() {
                "unset"
            } else {
                &found.kernel
            }
        )));
        ops.push(if cx.root.is_host_root() {
            Op::KernelHostname(p.name.clone())
        } else {
            Op::Write {
                path: cx.root.resolve(&kernel_path, Follow::All)?,
                content: format!("{}\n", p.name).into_bytes(),
                attrs: Attrs::default(),
            }
        });
    }
    if p.persist && found.persistent.as_deref() != Some(p.name.as_str()) {
        changes.push(Change::new(format!("wrote {} to {PERSISTENT}", p.name)));
        ops.push(Op::Write {
            path: persistent_host,
            content: format!("{}\n", p.name).into_bytes(),
            attrs: Attrs {
                mode: Some(0o644),
                ..Attrs::default()
            },
        });
    }
    Ok(if ops.is_empty() {
        Plan::Kept
    } else {
        Plan::Repair { changes, ops }
    })
}

fn abs(s: &str) -> Result<AbsPath, PromiseError> {
    AbsPath::parse(s).map_err(|e| PromiseError::Shared(format!("{s}: {e}")))
}

fn read_name(root: &Root, p: &Path) -> io::Result<Option<String>> {
    match root.read_file(p) {
        Ok(s) => Ok(Some(String::from_utf8_lossy(&s).trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// RFC 1123 labels, at most 64 bytes (the kernel's limit).
fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_validated() {
        assert!(valid("dcecell"));
        assert!(valid("alpha.example.com"));
        assert!(!valid(""));
        assert!(!valid("-x"));
        assert!(!valid("a b"));
        assert!(!valid("a..b"));
        assert!(!valid(&"x".repeat(65)));
    }
}
