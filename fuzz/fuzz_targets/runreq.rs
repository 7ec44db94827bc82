//! Fuzz a member's checks of a pushed run request: the `tenet-signature` header parser,
//! and `runreq::verify` on the input as request bytes.
//!
//! `verify` parses nothing before the signatures verified, so arbitrary bytes would
//! never get past them. The target therefore signs the input with an admin key of a
//! fixed root (as a real administrator's `push` would) and hands it to `verify` with
//! the replay cache a member keeps; every parse and field check behind the signature
//! is then reached. The first line of the input is also parsed as a signature header.
//!
//! Whatever `verify` accepts must name this member and deployment and live at most
//! 15 minutes, and the same request must then be refused as a replay.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tenet_keys::runreq::{self, ReplayCache, RunRequestError, Verifier};
use tenet_keys::sig::SignatureEntry;
use tenet_keys::{Root, SecretKey, Time};

/// The member's clock: 2026-11-21T22:10:00Z, the `issued` of the seed requests.
const NOW: u64 = 1_795_299_000;
const DEPLOYMENT: &str = "1f63766877b11c62791bb77c0ea94006";
const MEMBER: &str = "alpha";

struct Fixture {
    admin: SecretKey,
    root: Root,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = |n: u8| SecretKey::from_seed(&[n; 32]);
        let (root_key, policy, timestamp, admin) = (key(1), key(2), key(3), key(10));
        let entry = |k: &SecretKey, name: &str| {
            format!(
                "[[key]]\nid = \"{}\"\nalg = \"ed25519\"\npublic = \"{}\"\nname = \"{name}\"\n",
                k.key_id(),
                hex(&k.public().to_bytes()),
            )
        };
        let role = |name: &str, k: &SecretKey| {
            format!(
                "[roles.{name}]\nkeyids = [\"{}\"]\nthreshold = 1\n",
                k.key_id()
            )
        };
        let text = format!(
            "schema = 1\nkind = \"root\"\ndeployment = \"{DEPLOYMENT}\"\nversion = 1\n\
             expires = 2027-11-21T00:00:00Z\npolicy_epoch = 1\n{}{}{}{}{}{}{}{}\
             [[admin_scope]]\nkeyid = \"{}\"\nmembers = [\"*\"]\nclasses = [\"maint_*\"]\n\
             [transport]\nserver_spki = [\"{}\"]\n",
            role("root", &root_key),
            role("policy", &policy),
            role("timestamp", &timestamp),
            role("admin", &admin),
            entry(&root_key, "root-1"),
            entry(&policy, "policy"),
            entry(&timestamp, "timestamp"),
            entry(&admin, "alice"),
            admin.key_id(),
            key(4).key_id(),
        );
        let root = match Root::parse(text.as_bytes()) {
            Ok(root) => root,
            Err(e) => panic!("the fixed root does not parse: {e}\n{text}"),
        };
        Fixture { admin, root }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runreq::parse_signature_header(text.lines().next().unwrap_or_default());
    }
    let sig = fx
        .admin
        .sign(tenet_keys::Document::RunRequest.context(), data);
    let signatures = [SignatureEntry {
        keyid: fx.admin.key_id(),
        sig,
    }];
    let Some(now) = Time::from_unix(NOW) else {
        return;
    };
    let verifier = Verifier {
        root: &fx.root,
        member: MEMBER,
        peer: Some(fx.admin.key_id()),
        now,
        max_skew: runreq::DEFAULT_MAX_SKEW,
    };
    let mut seen = ReplayCache::new();
    let Ok(accepted) = runreq::verify(&verifier, data, &signatures, &mut seen) else {
        return;
    };
    let request = &accepted.request;
    assert_eq!(request.member, MEMBER);
    assert_eq!(request.deployment.to_string(), DEPLOYMENT);
    let life = request.expires.unix().saturating_sub(request.issued.unix());
    assert!(life > 0 && Duration::from_secs(life) <= runreq::MAX_LIFETIME);
    assert!(now < request.expires);
    assert_eq!(seen.len(), 1);
    assert!(matches!(
        runreq::verify(&verifier, data, &signatures, &mut seen),
        Err(RunRequestError::Replayed { .. })
    ));
});
