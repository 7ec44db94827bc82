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
    let path = dir.path().join("nonces.log");
    let root = root();
    let v = verifier(&root);
    let s = signed(&request("alpha", &[]), 10);
    let mut seen = ReplayCache::open(&path, None).unwrap();
    verify(&v, &s.bytes, &s.signatures, &mut seen).unwrap();
    seen.persist().unwrap();
    // A restarted member reads the cache back and still refuses the replay.
    let mut reloaded = ReplayCache::open(&path, None).unwrap();
    assert_eq!(reloaded.len(), 1);
    assert_eq!(reloaded.count_for(&key(10).key_id()), 1);
    let e = verify(&v, &s.bytes, &s.signatures, &mut reloaded).unwrap_err();
    assert!(matches!(e, RunRequestError::Replayed { .. }), "{e}");
    // The nonce is kept for the skew bound past its expiry, then dropped.
    let expiry = Time::from_unix(NOW + 290).unwrap();
    reloaded.prune(expiry, DEFAULT_MAX_SKEW);
    assert_eq!(reloaded.len(), 1);
    reloaded.prune(
        expiry.checked_add(DEFAULT_MAX_SKEW).unwrap(),
        DEFAULT_MAX_SKEW,
    );
    assert!(reloaded.is_empty());
    assert_eq!(reloaded.count_for(&key(10).key_id()), 0);
    // A corrupted cache is an error, never an empty cache.
    crate::fsio::write_atomic(&path, b"garbage\n", 0o600, crate::fsio::Overwrite::Replace).unwrap();
    assert!(matches!(
        ReplayCache::open(&path, None),
        Err(ReplayCacheError::Corrupted { line: 1, .. })
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

/// A request for `member` with nonce number `n`, issued 10 s before `at`.
fn numbered(member: &str, n: u64, at: u64) -> RunRequest {
    let mut r = request(member, &[]);
    r.nonce = format!("{n:032x}").parse().unwrap();
    r.issued = Time::from_unix(at - 10).unwrap();
    r.expires = Time::from_unix(at + 290).unwrap();
    r
}

fn at<'a>(root: &'a Root, member: &'a str, secs: u64) -> Verifier<'a> {
    Verifier {
        member,
        now: Time::from_unix(secs).unwrap(),
        ..verifier(root)
    }
}

/// Once a request has been accepted at some time, a clock stepped back behind it does not
/// make an older request valid again, though its nonce was forgotten, before a restart or
/// after one.
#[test]
fn finding_11_a_clock_stepped_back_does_not_reopen_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let root = root();
    let old = signed(&numbered("alpha", 1, NOW), 10);
    let mut seen = ReplayCache::open(&path, None).unwrap();
    verify(
        &at(&root, "alpha", NOW),
        &old.bytes,
        &old.signatures,
        &mut seen,
    )
    .unwrap();
    seen.persist().unwrap();
    // 20 minutes later another request is accepted; the first nonce is forgotten.
    let later = signed(&numbered("alpha", 2, NOW + 1200), 10);
    verify(
        &at(&root, "alpha", NOW + 1200),
        &later.bytes,
        &later.signatures,
        &mut seen,
    )
    .unwrap();
    seen.persist().unwrap();
    assert!(!seen.contains(&numbered("alpha", 1, NOW).nonce));

    // The clock is stepped back to when the first request was valid.
    let back = at(&root, "alpha", NOW + 5);
    let e = verify(&back, &old.bytes, &old.signatures, &mut seen).unwrap_err();
    assert_eq!(e.code(), "expired", "{e}");
    let mut reopened = ReplayCache::open(&path, None).unwrap();
    assert_eq!(
        reopened.high_water(),
        Some(Time::from_unix(NOW + 1200).unwrap())
    );
    let e = verify(&back, &old.bytes, &old.signatures, &mut reopened).unwrap_err();
    assert_eq!(e.code(), "expired", "{e}");

    // A member clock set far ahead does not carry the mark past a signed expiry.
    let mut fresh = ReplayCache::new();
    let r = signed(&numbered("alpha", 3, NOW), 10);
    verify(
        &at(&root, "alpha", NOW),
        &r.bytes,
        &r.signatures,
        &mut fresh,
    )
    .unwrap();
    assert!(fresh.high_water() <= Some(Time::from_unix(NOW + 290).unwrap()));
}

/// One administrator's key cannot fill the cache: past its quota its own requests are
/// refused (also after a restart), and another administrator's are still accepted.
#[test]
fn finding_11_one_admin_key_cannot_fill_the_cache_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let root = root();
    let v = at(&root, "beta", NOW);
    let quota = MAX_REPLAY_ENTRIES_PER_KEY as u64;
    // The member already accepted quota - 1 of alice's requests (recorded as `verify`
    // records them; signing thousands of requests would only make the test slow).
    let mut seen = ReplayCache::open(&path, None).unwrap();
    for n in 0..quota - 1 {
        let r = numbered("beta", n, NOW);
        seen.record(r.nonce, r.expires, key(10).key_id(), v.now);
    }
    seen.persist().unwrap();
    let last = signed(&numbered("beta", quota - 1, NOW), 10);
    verify(&v, &last.bytes, &last.signatures, &mut seen).unwrap();
    seen.persist().unwrap();
    let over = signed(&numbered("beta", quota, NOW), 10);
    let e = verify(&v, &over.bytes, &over.signatures, &mut seen).unwrap_err();
    assert_eq!(e.code(), "replay_quota", "{e}");
    assert!(e.to_string().contains(&key(10).key_id().to_string()), "{e}");
    // bob (another admin) is not locked out.
    let bob = signed(&numbered("beta", quota + 1, NOW), 11);
    verify(&v, &bob.bytes, &bob.signatures, &mut seen).unwrap();
    seen.persist().unwrap();

    let mut reopened = ReplayCache::open(&path, None).unwrap();
    assert_eq!(
        reopened.count_for(&key(10).key_id()),
        MAX_REPLAY_ENTRIES_PER_KEY
    );
    assert_eq!(reopened.count_for(&key(11).key_id()), 1);
    let e = verify(&v, &over.bytes, &over.signatures, &mut reopened).unwrap_err();
    assert_eq!(e.code(), "replay_quota", "{e}");
    // Once alice's requests expired (and the skew bound passed), she may ask again.
    let later = at(&root, "beta", NOW + 290 + 120);
    let again = signed(&numbered("beta", quota + 2, NOW + 290 + 120), 10);
    verify(&later, &again.bytes, &again.signatures, &mut reopened).unwrap();
}

/// Each accepted request appends one line and never rewrites the file, whether the cache
/// is empty or full; compaction keeps the file bounded and costs a constant amount per
/// request, amortised. Measured over 6,000 requests, one a second (so about 420 are live
/// at a time and the log is compacted several times), each recorded as `verify` records
/// it and persisted on its own, as policyd does.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the measured bytes per request are the result"
)]
fn finding_11_each_request_costs_a_constant_number_of_bytes_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let root = root();
    let mut seen = ReplayCache::open(&path, None).unwrap();
    let start = seen.bytes_written();
    let line_len = line_len();
    let n = 6_000u64;
    let mut per_request = Vec::new();
    let mut max_file = 0;
    for i in 0..n {
        let before = seen.bytes_written();
        let now = Time::from_unix(NOW + i).unwrap();
        let r = numbered("alpha", i, NOW + i);
        seen.prune(now, DEFAULT_MAX_SKEW);
        seen.record(r.nonce, r.expires, key(10).key_id(), now);
        seen.persist().unwrap();
        per_request.push(seen.bytes_written() - before);
        max_file = max_file.max(std::fs::metadata(&path).unwrap().len());
    }
    let total = seen.bytes_written() - start;
    let appends = per_request.iter().filter(|b| **b == line_len).count() as u64;
    let compactions = per_request.iter().filter(|b| **b > line_len).count();
    eprintln!(
        "replay cache: {n} requests, {total} bytes written ({:.1} per request; a line is {line_len}), {compactions} compactions, largest file {max_file} bytes, {} live",
        total as f64 / n as f64,
        seen.len()
    );
    assert_eq!(appends + compactions as u64, n);
    assert!(total <= 2 * line_len * n, "{total} bytes for {n} requests");
    // Bounded by the live nonces, not by the number of requests ever accepted.
    let bound = (2 * seen.len() as u64 + COMPACT_SLACK as u64 + 2) * line_len + 64;
    assert!(max_file <= bound, "{max_file} > {bound}");
    assert!(compactions >= 2, "{compactions}");
    // The same cache still accepts a real request, and refuses its replay.
    let s = signed(&numbered("alpha", n, NOW + n), 10);
    let v = at(&root, "alpha", NOW + n);
    verify(&v, &s.bytes, &s.signatures, &mut seen).unwrap();
    seen.persist().unwrap();
    let mut reopened = ReplayCache::open(&path, None).unwrap();
    let e = verify(&v, &s.bytes, &s.signatures, &mut reopened).unwrap_err();
    assert_eq!(e.code(), "replayed", "{e}");
}

/// The length of one log line.
fn line_len() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.log");
    let mut c = ReplayCache::open(&path, None).unwrap();
    let empty = std::fs::metadata(&path).unwrap().len();
    let r = numbered("alpha", 0, NOW);
    c.record(
        r.nonce,
        r.expires,
        key(10).key_id(),
        Time::from_unix(NOW).unwrap(),
    );
    c.persist().unwrap();
    std::fs::metadata(&path).unwrap().len() - empty
}

#[test]
fn a_torn_last_line_is_cut_off_and_an_older_cache_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let root = root();
    let v = verifier(&root);
    let s = signed(&numbered("alpha", 1, NOW), 10);
    let mut seen = ReplayCache::open(&path, None).unwrap();
    verify(&v, &s.bytes, &s.signatures, &mut seen).unwrap();
    seen.persist().unwrap();
    drop(seen);
    // A crash in the middle of the next append.
    let whole = std::fs::metadata(&path).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"n 0000000000000000000000000000000").unwrap();
    drop(f);
    let mut seen = ReplayCache::open(&path, None).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(
        verify(&v, &s.bytes, &s.signatures, &mut seen)
            .unwrap_err()
            .code(),
        "replayed"
    );
    // A damaged line anywhere else refuses the cache.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"n zz\nt 1\n").unwrap();
    drop(f);
    assert!(matches!(
        ReplayCache::open(&path, None),
        Err(ReplayCacheError::Corrupted { line: 3, .. })
    ));

    // The whole-file cache of earlier versions is taken over, then removed.
    let old = dir.path().join("old.toml");
    let new = dir.path().join("new.log");
    let r = numbered("alpha", 2, NOW);
    crate::fsio::write_atomic(
        &old,
        format!(
            "schema = 1\nkind = \"replay-cache\"\n\n[[seen]]\nnonce = \"{}\"\nexpires = {}\n",
            r.nonce, r.expires
        )
        .as_bytes(),
        0o600,
        crate::fsio::Overwrite::Replace,
    )
    .unwrap();
    let mut seen = ReplayCache::open(&new, Some(&old)).unwrap();
    assert!(!old.exists());
    let s = signed(&r, 10);
    assert_eq!(
        verify(&v, &s.bytes, &s.signatures, &mut seen)
            .unwrap_err()
            .code(),
        "replayed"
    );
    let mut reopened = ReplayCache::open(&new, Some(&old)).unwrap();
    assert_eq!(reopened.len(), 1);
    assert_eq!(
        verify(&v, &s.bytes, &s.signatures, &mut reopened)
            .unwrap_err()
            .code(),
        "replayed"
    );
}
