//! The ratchet accepting what it should: timestamps old and new, re-verification, root
//! rotation with epoch bumps and key changes, persistence of the state.

use tenet_keys::{
    Document, TimestampOutcome, TrustState, VerifyError, bundle, check_manifest, check_timestamp,
    update_root, verify_bundle,
};

use crate::util::{DAY, Fx, NOW, key, sig, spec, t, write};

#[test]
fn timestamp_then_manifest_then_the_same_timestamp_again() {
    let fx = Fx::new();
    let state = fx.state();
    let (m, ms) = fx.signed(&fx.manifest(1));
    let (ts, tss) = fx.signed_ts(&fx.timestamp_for(&m, NOW, t(NOW + 6 * 3600)));

    let expected = match check_timestamp(&state, ts.as_bytes(), tss.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Newer(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(expected.timestamp_version(), NOW);
    let (state, manifest) = check_manifest(
        &state,
        m.as_bytes(),
        ms.as_bytes(),
        Some(&expected),
        &fx.clock(),
    )
    .unwrap();
    assert_eq!((state.epoch(), state.serial()), (1, 1));
    assert_eq!(state.timestamp_version(), NOW);
    assert_eq!(manifest.members[0].name, "alpha");

    // The same timestamp names the trusted manifest: nothing to fetch.
    match check_timestamp(&state, ts.as_bytes(), tss.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Current { state: s, .. }) => assert_eq!(*s, state),
        other => panic!("{other:?}"),
    }

    // An older timestamp (the other half of a split brain) is ignored.
    let (old, olds) = fx.signed_ts(&fx.timestamp_for(&m, NOW - 10, t(NOW + 3600)));
    match check_timestamp(&state, old.as_bytes(), olds.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Ignored { offered, trusted }) => {
            assert_eq!((offered, trusted), (NOW - 10, NOW));
        }
        other => panic!("{other:?}"),
    }

    // The trusted manifest itself is accepted again (a cached bundle re-checked).
    let (again, _) =
        check_manifest(&state, m.as_bytes(), ms.as_bytes(), None, &fx.clock()).unwrap();
    assert_eq!(again, state);
}

#[test]
fn policy_key_rotation_with_an_epoch_bump_allows_serials_to_restart() {
    let fx = Fx::new();
    let (state, _) = fx.state_at(1042);
    let new_policy = key(12);
    let r2 = fx.next_root(|r| {
        r.keys.retain(|k| k.id != fx.policy.key_id());
        r.keys.push(crate::util::entry(&new_policy, "policy-2"));
        r.roles.policy = spec(&[&new_policy], 1);
        r.policy_epoch = 2;
    });
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[1], &fx.root_keys[2]],
        Document::Root,
        text.as_bytes(),
    );
    let state = update_root(&state, text.as_bytes(), s.as_bytes()).unwrap();
    assert_eq!(state.root().root().version, 2);

    let mut m = fx.manifest(1);
    m.epoch = 2;
    m.root_version = 2;
    let mtext = m.render().unwrap();
    // The old (compromised) policy key no longer counts.
    let old = sig(&[&fx.policy], Document::Manifest, mtext.as_bytes());
    assert!(matches!(
        check_manifest(&state, mtext.as_bytes(), old.as_bytes(), None, &fx.clock()),
        Err(VerifyError::Threshold { valid: 0, .. })
    ));
    let new = sig(&[&new_policy], Document::Manifest, mtext.as_bytes());
    let (state, _) =
        check_manifest(&state, mtext.as_bytes(), new.as_bytes(), None, &fx.clock()).unwrap();
    assert_eq!((state.epoch(), state.serial()), (2, 1));
}

#[test]
fn timestamp_key_rotation_resets_the_timestamp_ratchet() {
    let fx = Fx::new();
    let (m, ms) = fx.signed(&fx.manifest(1));
    // A leaked timestamp key pushed the version ahead (as far as the skew allows).
    let ahead = NOW + 240;
    let (ts, tss) = fx.signed_ts(&fx.timestamp_for(&m, ahead, t(NOW + 3600)));
    let e = match check_timestamp(&fx.state(), ts.as_bytes(), tss.as_bytes(), &fx.clock()).unwrap()
    {
        TimestampOutcome::Newer(e) => e,
        other => panic!("{other:?}"),
    };
    let (state, _) = check_manifest(
        &fx.state(),
        m.as_bytes(),
        ms.as_bytes(),
        Some(&e),
        &fx.clock(),
    )
    .unwrap();
    assert_eq!(state.timestamp_version(), ahead);

    let new_ts = key(21);
    let r2 = fx.next_root(|r| {
        r.keys.push(crate::util::entry(&new_ts, "timestamp-2"));
        r.roles.timestamp = spec(&[&new_ts], 1);
    });
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    let state = update_root(&state, text.as_bytes(), s.as_bytes()).unwrap();
    assert_eq!(state.timestamp_version(), 0);
    assert_eq!(state.serial(), 1, "the manifest ratchet is kept");
}

#[test]
fn trust_state_persists_and_a_corrupted_one_is_refused() {
    let fx = Fx::new();
    let (state, _) = fx.state_at(7);
    let text = state.to_toml().unwrap();
    assert_eq!(TrustState::from_toml(&text).unwrap(), state);

    let fresh = fx.state().to_toml().unwrap();
    assert!(!fresh.contains("manifest_sha256"));
    assert_eq!(TrustState::from_toml(&fresh).unwrap(), fx.state());

    // Someone edits the root inside the state: its signatures no longer verify.
    let tampered = text.replacen("policy_epoch = 1", "policy_epoch = 9", 1);
    assert_ne!(tampered, text);
    assert!(matches!(
        TrustState::from_toml(&tampered),
        Err(VerifyError::BadSignature {
            document: Document::Root,
            ..
        })
    ));
    assert!(matches!(
        TrustState::from_toml("schema = 1\n"),
        Err(VerifyError::TrustState { .. })
    ));
}

#[test]
fn bundle_with_root_updates_and_a_timestamp() {
    let fx = Fx::new();
    let dir = tempfile::tempdir().unwrap();
    let mut m = fx.manifest(3);
    m.root_version = 3;
    let (mtext, ms) = fx.signed(&m);
    let b = fx.write_bundle(dir.path(), &mtext, &ms);
    // Roots 2 and 3, each signed by two old and two new root keys (the same keys here).
    for v in 2..=3u64 {
        let r = fx.next_root(|r| {
            r.version = v;
            r.expires = t(NOW + (365 + v) * DAY);
        });
        let text = r.render().unwrap();
        let s = sig(
            &[&fx.root_keys[0], &fx.root_keys[2]],
            Document::Root,
            text.as_bytes(),
        );
        write(&bundle::root_path(&b, v), text.as_bytes());
        write(&bundle::sig_path(&bundle::root_path(&b, v)), s.as_bytes());
    }
    let (ts, tss) = fx.signed_ts(&fx.timestamp_for(&mtext, NOW, t(NOW + 3600)));
    write(&b.join(bundle::TIMESTAMP), ts.as_bytes());
    write(
        &bundle::sig_path(&b.join(bundle::TIMESTAMP)),
        tss.as_bytes(),
    );

    let v = verify_bundle(&fx.state(), &b, &fx.clock()).unwrap();
    assert_eq!(v.root_updates(), &[2, 3]);
    assert_eq!(v.state().root().root().version, 3);
    assert_eq!(v.state().serial(), 3);
    assert_eq!(v.state().timestamp_version(), NOW);
    assert_eq!(v.timestamp().map(|t| t.version), Some(NOW));
    assert_eq!(v.files().len(), 2);
    assert_eq!(v.members()[0].keyid, key(40).key_id());
    assert_eq!(v.read_file("files/motd").unwrap().unwrap(), b"welcome\n");
    assert!(v.read_file("nope").is_none());

    // A blob changed after verification is caught on read.
    write(&v.blob_path(&v.files()[1]), b"WELCOME\n");
    assert!(matches!(
        v.read_file("files/motd"),
        Some(Err(VerifyError::BlobHash { .. }))
    ));

    // Verifying the same bundle from the new state: the same manifest, accepted again.
    let state = v.into_state();
    write(
        &bundle::blob_path(&b, &tenet_keys::Sha256Sum::of(b"welcome\n")),
        b"welcome\n",
    );
    let again = verify_bundle(&state, &b, &fx.clock()).unwrap();
    assert!(again.root_updates().is_empty());
    assert_eq!(again.state(), &state);
}
