//! Every refusal of a run request, one `check` helper, many small cases.

use super::*;
use crate::document::RootKind;
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

/// Root key 1, policy 2, timestamp 3; admins alice (10: every member, `maint_*`) and
/// bob (11: beta only, no classes); carol (12) is an admin without a scope.
fn root() -> Root {
    let spec = |k: &SecretKey| RoleSpec {
        keyids: vec![k.key_id()],
        threshold: 1,
    };
    let (alice, bob, carol) = (key(10), key(11), key(12));
    Root {
        schema: Schema,
        kind: RootKind,
        deployment: deployment(),
        version: 2,
        expires: Time::from_unix(NOW + 86_400).unwrap(),
        policy_epoch: 1,
        roles: Roles {
            root: spec(&key(1)),
            policy: spec(&key(2)),
            timestamp: spec(&key(3)),
            admin: RoleSpec {
                keyids: vec![alice.key_id(), bob.key_id(), carol.key_id()],
                threshold: 1,
            },
        },
        keys: vec![
            entry(&key(1), "root-1"),
            entry(&key(2), "policy"),
            entry(&key(3), "timestamp"),
            entry(&alice, "alice"),
            entry(&bob, "bob"),
            entry(&carol, "carol"),
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

fn request(member: &str, classes: &[&str]) -> RunRequest {
    RunRequest {
        schema: Schema,
        kind: RunRequestKind,
        deployment: deployment(),
        member: member.to_string(),
        nonce: "0123456789abcdef0123456789abcdef".parse().unwrap(),
        issued: Time::from_unix(NOW - 10).unwrap(),
        expires: Time::from_unix(NOW + 290).unwrap(),
        dry_run: false,
        classes: classes.iter().map(|s| s.to_string()).collect(),
    }
}

fn verifier(root: &Root) -> Verifier<'_> {
    Verifier {
        root,
        member: "alpha",
        peer: None,
        now: Time::from_unix(NOW).unwrap(),
        max_skew: DEFAULT_MAX_SKEW,
    }
}

/// Verifies `signed` as member alpha at NOW with a fresh cache; returns the code.
fn check(signed: &SignedRunRequest, edit: impl FnOnce(&mut Verifier<'_>)) -> &'static str {
    let root = root();
    let mut v = verifier(&root);
    edit(&mut v);
    let mut seen = ReplayCache::new();
    match verify(&v, &signed.bytes, &signed.signatures, &mut seen) {
        Ok(_) => "ok",
        Err(e) => {
            assert!(seen.is_empty(), "a refused request left its nonce: {e}");
            e.code()
        }
    }
}

fn signed(r: &RunRequest, by: u8) -> SignedRunRequest {
    sign(r, &key(by)).unwrap()
}

/// Signs raw text as a run request would be.
fn signed_text(text: &str, by: u8) -> SignedRunRequest {
    let bytes = text.as_bytes().to_vec();
    SignedRunRequest {
        signatures: vec![SignatureEntry {
            keyid: key(by).key_id(),
            sig: key(by).sign(Document::RunRequest.context(), &bytes),
        }],
        bytes,
    }
}

#[test]
fn a_good_request_is_accepted_once() {
    let root = root();
    let v = verifier(&root);
    let s = signed(&request("alpha", &["maint_x"]), 10);
    let mut seen = ReplayCache::new();
    let ok = verify(&v, &s.bytes, &s.signatures, &mut seen).unwrap();
    assert_eq!(ok.signers, vec![key(10).key_id()]);
    assert_eq!(ok.request.classes, ["maint_x"]);
    assert_eq!(ok.request.mode(), RunMode::Apply);
    let again = verify(&v, &s.bytes, &s.signatures, &mut seen).unwrap_err();
    assert_eq!(again.code(), "replayed", "{again}");
}

#[test]
fn replayed_nonce_survives_a_restart_and_is_forgotten_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.toml");
    let root = root();
    let v = verifier(&root);
    let s = signed(&request("alpha", &[]), 10);
    let mut seen = ReplayCache::load(&path).unwrap();
    verify(&v, &s.bytes, &s.signatures, &mut seen).unwrap();
    seen.save(&path).unwrap();
    // A restarted member reads the cache back and still refuses the replay.
    let mut reloaded = ReplayCache::load(&path).unwrap();
    assert_eq!(reloaded, seen);
    let e = verify(&v, &s.bytes, &s.signatures, &mut reloaded).unwrap_err();
    assert!(matches!(e, RunRequestError::Replayed { .. }), "{e}");
    // Once the request expired the nonce is dropped (and the request refused as expired).
    reloaded.prune(Time::from_unix(NOW + 290).unwrap());
    assert!(reloaded.is_empty());
    // A corrupted cache is an error, never an empty cache.
    crate::fsio::write_atomic(&path, b"garbage", 0o600, Overwrite::Replace).unwrap();
    assert!(matches!(
        ReplayCache::load(&path),
        Err(ReplayCacheError::Parse { .. })
    ));
}

#[test]
fn expired_and_not_yet_valid() {
    let r = request("alpha", &[]);
    assert_eq!(
        check(&signed(&r, 10), |v| v.now =
            Time::from_unix(NOW + 290).unwrap()),
        "expired"
    );
    assert_eq!(
        check(&signed(&r, 10), |v| v.now =
            Time::from_unix(NOW + 10_000).unwrap()),
        "expired"
    );
    // Issued beyond the skew bound in the future.
    let mut early = request("alpha", &[]);
    early.issued = Time::from_unix(NOW + 200).unwrap();
    early.expires = Time::from_unix(NOW + 400).unwrap();
    assert_eq!(check(&signed(&early, 10), |_| {}), "not_yet_valid");
    // Within the bound it is fine.
    early.issued = Time::from_unix(NOW + 100).unwrap();
    assert_eq!(check(&signed(&early, 10), |_| {}), "ok");
}

#[test]
fn lifetime_over_fifteen_minutes_is_refused() {
    let mut r = request("alpha", &[]);
    r.expires = Time::from_unix(NOW - 10 + 15 * 60 + 1).unwrap();
    assert_eq!(check(&signed(&r, 10), |_| {}), "lifetime");
    r.expires = r.issued;
    assert_eq!(check(&signed(&r, 10), |_| {}), "lifetime");
    // And it cannot be made that way.
    let e = RunRequest::new(
        deployment(),
        "alpha",
        Time::from_unix(NOW).unwrap(),
        Duration::from_secs(16 * 60),
        RunMode::Apply,
        vec![],
    )
    .unwrap_err();
    assert_eq!(e.code(), "lifetime");
}

#[test]
fn scope_member_and_class() {
    // bob may only trigger beta.
    assert_eq!(
        check(&signed(&request("alpha", &[]), 11), |_| {}),
        "member_out_of_scope"
    );
    assert_eq!(
        check(&signed(&request("beta", &[]), 11), |v| v.member = "beta"),
        "ok"
    );
    // bob may set no class; alice only maint_*.
    assert_eq!(
        check(&signed(&request("beta", &["maint_x"]), 11), |v| v.member =
            "beta"),
        "class_out_of_scope"
    );
    assert_eq!(
        check(&signed(&request("alpha", &["maint_x", "web"]), 10), |_| {}),
        "class_out_of_scope"
    );
    // carol is an admin with no scope: nothing.
    assert_eq!(
        check(&signed(&request("alpha", &[]), 12), |_| {}),
        "member_out_of_scope"
    );
}

#[test]
fn unsigned_wrongly_signed_unknown_and_non_admin_keys() {
    let r = request("alpha", &[]);
    let mut s = signed(&r, 10);
    s.signatures.clear();
    assert_eq!(check(&s, |_| {}), "unsigned");
    assert_eq!(parse_signature_header("").unwrap_err().code(), "unsigned");

    // Bytes changed after signing.
    let mut s = signed(&r, 10);
    s.bytes.extend_from_slice(b"# x\n");
    assert_eq!(check(&s, |_| {}), "bad_signature");
    // Alice's key id with bob's signature.
    let mut s = signed(&r, 11);
    s.signatures[0].keyid = key(10).key_id();
    assert_eq!(check(&s, |_| {}), "bad_signature");
    // Signed with another context (a manifest signature over the same bytes).
    let mut s = signed(&r, 10);
    s.signatures[0].sig = key(10).sign(Document::Manifest.context(), &s.bytes);
    assert_eq!(check(&s, |_| {}), "bad_signature");

    assert_eq!(check(&signed(&r, 99), |_| {}), "unknown_key");
    // The policy key and the root key are keys of the root, not admin keys.
    assert_eq!(check(&signed(&r, 2), |_| {}), "not_admin");
    assert_eq!(check(&signed(&r, 1), |_| {}), "not_admin");
}

#[test]
fn oversized_and_malformed() {
    let big = format!(
        "{}# {}\n",
        request("alpha", &[]).render().unwrap(),
        "a".repeat(5000)
    );
    assert_eq!(check(&signed_text(&big, 10), |_| {}), "oversized");
    for text in [
        "schema = 2\nkind = \"runreq\"\n",
        "schema = 1\nkind = \"manifest\"\n",
        "not toml",
    ] {
        assert_eq!(check(&signed_text(text, 10), |_| {}), "malformed", "{text}");
    }
    // An unknown field (say, a command) is refused, signed or not.
    let with_command = format!(
        "{}command = \"rm -rf /\"\n",
        request("alpha", &[]).render().unwrap()
    );
    assert_eq!(check(&signed_text(&with_command, 10), |_| {}), "malformed");
    // Bad class names and too many classes.
    assert_eq!(
        check(&signed(&request("alpha", &["maint_$(x)"]), 10), |_| {}),
        "malformed"
    );
    let many: Vec<String> = (0..33).map(|i| format!("maint_{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        check(&signed(&request("alpha", &many), 10), |_| {}),
        "malformed"
    );
    // Malformed signature headers.
    for header in ["x", "zz:yy", &format!("{}:00", key(10).key_id())] {
        assert_eq!(
            parse_signature_header(header).unwrap_err().code(),
            "malformed_signature",
            "{header}"
        );
    }
}

#[test]
fn wrong_deployment_wrong_member_and_wrong_peer() {
    let mut r = request("alpha", &[]);
    r.deployment = "ffeeddccbbaa99887766554433221100".parse().unwrap();
    assert_eq!(check(&signed(&r, 10), |_| {}), "wrong_deployment");
    assert_eq!(
        check(&signed(&request("beta", &[]), 10), |_| {}),
        "wrong_member"
    );
    // Signed by alice, sent over bob's connection.
    assert_eq!(
        check(&signed(&request("alpha", &[]), 10), |v| v.peer =
            Some(key(11).key_id())),
        "peer_not_signer"
    );
    assert_eq!(
        check(&signed(&request("alpha", &[]), 10), |v| v.peer =
            Some(key(10).key_id())),
        "ok"
    );
}

#[test]
fn signature_header_round_trips_and_threshold_counts_distinct_keys() {
    let s = signed(&request("alpha", &[]), 10);
    let header = signature_header(&s.signatures);
    assert_eq!(parse_signature_header(&header).unwrap(), s.signatures);
    // A threshold of 2 is not met by one key signing twice.
    let mut root = root();
    root.roles.admin.threshold = 2;
    let v = verifier(&root);
    let mut twice = s.clone();
    twice.signatures.push(s.signatures[0].clone());
    let e = verify(&v, &twice.bytes, &twice.signatures, &mut ReplayCache::new()).unwrap_err();
    assert_eq!(e.code(), "threshold", "{e}");
}
