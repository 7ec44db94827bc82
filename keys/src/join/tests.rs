//! Every refusal of a join token, one `check` helper, many small cases; the used-token
//! file across a reopen; the deployment's approval record.

use super::*;
use crate::document::{RootKind, Schema};
use crate::root::{AdminScope, Alg, KeyEntry, RoleSpec, Roles, Transport};

const NOW: u64 = 1_795_298_400;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn entry(k: &SecretKey, name: &str) -> KeyEntry {
    KeyEntry {
        id: k.key_id(),
        alg: Alg::Ed25519,
        public: k.public(),
        name: name.to_string(),
    }
}

fn deployment() -> DeploymentId {
    "00112233445566778899aabbccddeeff".parse().unwrap()
}

fn at(secs: u64) -> Time {
    Time::from_unix(secs).unwrap()
}

/// Root key 1, policy 2; admins alice (10: every member, `maint_*`) and bob (11: beta
/// only, no classes).
fn root() -> Root {
    let spec = |k: &SecretKey| RoleSpec {
        keyids: vec![k.key_id()],
        threshold: 1,
    };
    let (alice, bob) = (key(10), key(11));
    Root {
        schema: Schema,
        kind: RootKind,
        deployment: deployment(),
        version: 2,
        expires: at(NOW + 86_400),
        policy_epoch: 1,
        roles: Roles {
            root: spec(&key(1)),
            policy: spec(&key(2)),
            timestamp: spec(&key(3)),
            admin: RoleSpec {
                keyids: vec![alice.key_id(), bob.key_id()],
                threshold: 1,
            },
        },
        keys: vec![
            entry(&key(1), "root-1"),
            entry(&key(2), "policy"),
            entry(&key(3), "timestamp"),
            entry(&alice, "alice"),
            entry(&bob, "bob"),
        ],
        admin_scopes: vec![
            AdminScope {
                keyid: alice.key_id(),
                members: vec!["*".to_string()],
                classes: vec!["maint_*".to_string()],
            },
            AdminScope {
                keyid: bob.key_id(),
                members: vec!["beta".to_string()],
                classes: vec![],
            },
        ],
        transport: Transport::default(),
    }
}

fn token(member: &str, classes: &[&str]) -> JoinToken {
    JoinToken {
        deployment: deployment(),
        member: member.to_string(),
        id: "0123456789abcdef0123456789abcdef".parse().unwrap(),
        issued: at(NOW - 10),
        expires: at(NOW + 3600),
        approval: Approval::Manual,
        classes: classes.iter().map(|s| s.to_string()).collect(),
    }
}

/// Verifies `text` at NOW and returns the refusal code, or "ok".
fn check(text: &str, now: u64) -> &'static str {
    match verify(&root(), text, at(now), DEFAULT_MAX_SKEW) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn a_token_round_trips_through_its_text() {
    let t = token("alpha", &["maint_a", "maint_b"]);
    let text = t.issue(&key(10));
    assert!(!text.contains(char::is_whitespace));
    assert_eq!(
        verify(&root(), &text, at(NOW), DEFAULT_MAX_SKEW).unwrap(),
        t
    );
    assert_eq!(split(&text).unwrap().unverified().unwrap(), t);
}

#[test]
fn refusals_each_have_their_code() {
    let ok = token("alpha", &[]);
    assert_eq!(check(&ok.issue(&key(10)), NOW), "ok");
    // Signed by the policy key: a key of the root, not an admin.
    assert_eq!(check(&ok.issue(&key(2)), NOW), "not_admin");
    // Signed by a key the root does not list.
    assert_eq!(check(&ok.issue(&key(99)), NOW), "unknown_key");
    // Expired, and not yet valid.
    assert_eq!(check(&ok.issue(&key(10)), NOW + 3600), "expired");
    assert_eq!(check(&ok.issue(&key(10)), NOW - 200), "not_yet_valid");
    // Bob may enrol beta only; alice no class outside maint_*.
    assert_eq!(check(&ok.issue(&key(11)), NOW), "out_of_scope");
    assert_eq!(check(&token("beta", &[]).issue(&key(11)), NOW), "ok");
    assert_eq!(
        check(&token("alpha", &["web"]).issue(&key(10)), NOW),
        "out_of_scope"
    );
    let mut other = token("alpha", &[]);
    other.deployment = "ffeeddccbbaa99887766554433221100".parse().unwrap();
    assert_eq!(check(&other.issue(&key(10)), NOW), "wrong_deployment");
}

#[test]
fn an_edited_token_fails_its_signature() {
    let text = token("alpha", &[]).issue(&key(10));
    let edited = text.replacen(":alpha:", ":alphb:", 1);
    assert_eq!(check(&edited, NOW), "bad_signature");
    let longer = text.replacen(":manual:", ":auto:", 1);
    assert_eq!(check(&longer, NOW), "bad_signature");
}

#[test]
fn malformed_tokens_are_refused_before_anything_else() {
    for text in [
        "",
        "tenet-join-v1",
        "hello:world",
        "tenet-join-v2:a:b:c:d:e:f:g:h:i",
        &"x".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert_eq!(check(text, NOW), "malformed", "{text:?}");
    }
    // A signature that verifies over a payload with a bad field still fails the parse.
    let mut t = token("alpha", &[]);
    t.member = "-bad".to_string();
    assert_eq!(check(&t.issue(&key(10)), NOW), "malformed");
}

#[test]
fn a_used_token_is_refused_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(USED_FILE);
    let t = token("alpha", &[]);
    let mut used = UsedTokens::open(&path).unwrap();
    used.record(&t).unwrap();
    assert_eq!(used.record(&t).unwrap_err().code(), "token_used");
    let mut again = UsedTokens::open(&path).unwrap();
    assert_eq!(again.record(&t).unwrap_err().code(), "token_used");
    let mut other = t.clone();
    other.id = "fedcba9876543210fedcba9876543210".parse().unwrap();
    again.record(&other).unwrap();
}

#[test]
fn approval_refuses_a_token_twice_and_one_issued_before_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let t = token("alpha", &[]);
    let mut joins = Joins::open(dir.path()).unwrap();
    joins.check(&t).unwrap();
    joins.approved(&t).unwrap();
    let joins = Joins::open(dir.path()).unwrap();
    assert_eq!(joins.check(&t).unwrap_err().code(), "token_used");

    let mut later = t.clone();
    later.id = "fedcba9876543210fedcba9876543210".parse().unwrap();
    let mut joins = Joins::open(dir.path()).unwrap();
    joins.revoked("alpha", at(NOW)).unwrap();
    assert_eq!(joins.check(&later).unwrap_err().code(), "revoked");
    later.issued = at(NOW + 1);
    joins.check(&later).unwrap();
}

#[test]
fn requests_are_stored_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let t = token("alpha", &[]);
    let r = JoinRequest {
        member: "alpha".to_string(),
        keyid: key(20).key_id(),
        received: at(NOW),
        approval: Approval::Auto,
        classes: vec![],
        token: t.issue(&key(10)),
    };
    r.store(dir.path()).unwrap();
    let listed = requests(dir.path()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, r);
}
