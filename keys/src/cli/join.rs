//! The join commands of `tenet-keys`: `join-token`, `fingerprint`, `requests`,
//! `approve` (see [`crate::join`] for the token and the checks).

use std::path::{Path, PathBuf};

use super::{JoinTokenArgs, Out};
use crate::deployment::{self, Deployment, Enrollment};
use crate::error::JoinError;
use crate::error::PublishError;
use crate::join::{self, Approval, JoinRequest, JoinToken, Joins};
use crate::key::{Role, SecretKey};
use crate::root::Root;
use crate::time::Time;
use crate::verify::TrustedRoot;
use crate::{bundle, error_chain};

pub(crate) fn join_token(
    a: &JoinTokenArgs,
    now: Time,
    out: &mut Out<'_>,
) -> Result<(), PublishError> {
    let d = Deployment::open(&a.dir)?;
    let root = latest_root(&d)?;
    let key_path = match &a.key {
        Some(k) => k.clone(),
        None => only_admin_key(&d)?,
    };
    let key = SecretKey::read(&key_path)?;
    if !root.has_role_key(Role::Admin, &key.key_id()) {
        return Err(PublishError::KeyNotInRole {
            keyid: key.key_id(),
            role: Role::Admin,
            root_version: root.version,
            path: key_path,
        });
    }
    let approval = if a.auto {
        Approval::Auto
    } else {
        Approval::Manual
    };
    let token = JoinToken::new(
        d.id(),
        &a.member,
        now,
        a.expires,
        approval,
        a.classes.clone(),
    )?;
    let text = token.issue(&key);
    // The deployment's own root must accept it, scope included, or the master will not.
    join::verify(&root, &text, now, join::DEFAULT_MAX_SKEW)?;
    out.json(
        "join_token",
        serde_json::json!({
            "token": text,
            "member": token.member,
            "id": token.id.to_string(),
            "expires": token.expires.to_string(),
            "approval": approval.name(),
            "classes": token.classes,
            "signer": key.key_id().to_string(),
        }),
    );
    let _ = writeln!(out.text(), "{text}");
    let _ = writeln!(
        out.text(),
        "# one-time token for member {} (id {}), valid until {}, approval {}; on the member:\n#   tenet-agent join MASTER:8741 --token TOKEN --trusted-root ROOT --expect-fingerprint FP",
        token.member,
        token.id,
        token.expires,
        approval.name()
    );
    Ok(())
}

pub(crate) fn fingerprint(root: &Path, out: &mut Out<'_>) -> Result<(), PublishError> {
    let bytes = deployment::read_bytes(root)?;
    let sigs = deployment::read_bytes(&bundle::sig_path(root))?;
    let trusted = TrustedRoot::bootstrap(&bytes, &sigs, None)?;
    let r = trusted.root();
    out.json(
        "fingerprint",
        serde_json::json!({
            "root": root.display().to_string(),
            "fingerprint": trusted.sha256().to_string(),
            "deployment": r.deployment.to_string(),
            "version": r.version,
        }),
    );
    let _ = writeln!(out.text(), "{}", trusted.sha256());
    let _ = writeln!(
        out.text(),
        "# root version {} of deployment {} ({})",
        r.version,
        r.deployment,
        root.display()
    );
    Ok(())
}

pub(crate) fn requests(dir: &Path, join_dir: &Path, out: &mut Out<'_>) -> Result<(), PublishError> {
    let d = Deployment::open(dir)?;
    let root = latest_root(&d)?;
    let joins = Joins::open(dir)?;
    let mut listed = Vec::new();
    for (path, r) in join::requests(join_dir)? {
        let verdict = check(&root, &joins, &r).err();
        let _ = writeln!(
            out.text(),
            "{:<16} {}  {:<6} received {}  {}",
            r.member,
            r.keyid,
            r.approval.name(),
            r.received,
            verdict.as_ref().map_or_else(
                || "ok".to_string(),
                |e| format!("refused: {}", error_chain(e))
            )
        );
        listed.push(serde_json::json!({
            "member": r.member,
            "keyid": r.keyid.to_string(),
            "approval": r.approval.name(),
            "received": r.received.to_string(),
            "classes": r.classes,
            "path": path.display().to_string(),
            "refused": verdict.map(|e| e.code()),
        }));
    }
    if listed.is_empty() {
        let _ = writeln!(out.text(), "no join requests in {}", join_dir.display());
    }
    out.json("requests", serde_json::json!({ "requests": listed }));
    Ok(())
}

pub(crate) fn approve(
    dir: &Path,
    member: Option<&str>,
    auto: bool,
    join_dir: &Path,
    out: &mut Out<'_>,
) -> Result<(), PublishError> {
    let d = Deployment::open(dir)?;
    let root = latest_root(&d)?;
    let all = join::requests(join_dir)?;
    let chosen: Vec<(PathBuf, JoinRequest)> = match member {
        Some(name) => {
            let found: Vec<_> = all.into_iter().filter(|(_, r)| r.member == name).collect();
            if found.is_empty() {
                return Err(JoinError::NoRequest {
                    member: name.to_string(),
                    dir: join_dir.join(join::REQUESTS_DIR),
                }
                .into());
            }
            found
        }
        None => all
            .into_iter()
            .filter(|(_, r)| auto && r.approval == Approval::Auto)
            .collect(),
    };
    let mut approved = Vec::new();
    let mut refused = None;
    for (path, r) in chosen {
        let mut joins = Joins::open(dir)?;
        let token = match check(&root, &joins, &r) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(
                    out.text(),
                    "refused member {}: {}",
                    r.member,
                    error_chain(&e)
                );
                refused.get_or_insert(e);
                continue;
            }
        };
        let change = d.enroll(&r.member, r.keyid)?;
        d.set_classes(&r.member, &token.classes)?;
        joins.approved(&token)?;
        // Approved: the request is done. A failure to remove it only leaves a line that
        // `requests` shows as already used.
        let _ = std::fs::remove_file(&path);
        let what = match change {
            Enrollment::New => "enrolled".to_string(),
            Enrollment::Replaced(old) => format!("re-keyed (was {old})"),
            Enrollment::Unchanged => "already enrolled with this key".to_string(),
        };
        let _ = writeln!(
            out.text(),
            "approved member {} with key {}: {what}; the next signed manifest carries it",
            r.member,
            r.keyid
        );
        approved.push(serde_json::json!({
            "member": r.member, "keyid": r.keyid.to_string(), "classes": r.classes,
        }));
    }
    if approved.is_empty() && refused.is_none() {
        let _ = writeln!(out.text(), "no requests to approve");
    }
    out.json("approve", serde_json::json!({ "approved": approved }));
    match refused {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// A stored request's token, verified again as of when the master accepted it, for the
/// request's member, not approved before and not issued before a revocation.
fn check(root: &Root, joins: &Joins, r: &JoinRequest) -> Result<JoinToken, JoinError> {
    let token = join::verify(root, &r.token, r.received, join::DEFAULT_MAX_SKEW)?;
    if token.member != r.member {
        return Err(JoinError::WrongMember {
            token: token.member,
            asked: r.member.clone(),
        });
    }
    joins.check(&token)?;
    Ok(token)
}

fn latest_root(d: &Deployment) -> Result<Root, PublishError> {
    Ok(d.root_history()?.state.root().root().clone())
}

/// `keys/admin-NAME.key` of the deployment's only administrator.
fn only_admin_key(d: &Deployment) -> Result<PathBuf, PublishError> {
    let admins = d.admins()?;
    match admins.as_slice() {
        [one] => Ok(d.dir().join("keys").join(format!("admin-{}.key", one.name))),
        [] => Err(PublishError::NoAdminKey {
            reason: "the deployment has no administrator (tenet-keys admin-key)".to_string(),
        }),
        _ => Err(PublishError::NoAdminKey {
            reason: format!("the deployment has {} administrators", admins.len()),
        }),
    }
}
