//! Attacks and bad input: each case asserts the specific error and that the trusted
//! state did not change.

use std::io;

use tenet_keys::error::{PathProblem, RootProblem, SigFileProblem};
use tenet_keys::manifest::FileEntry;
use tenet_keys::{
    Document, Role, Sha256Sum, TimestampOutcome, TrustState, TrustedRoot, VerifyError, bundle,
    check_blob, check_blob_stream, check_manifest, check_root_fresh, check_timestamp, update_root,
    verify_bundle, verify_bundle_stored, verify_cached,
};

use crate::util::{DAY, Fx, NOW, key, refused, sig, spec, t, write};

fn manifest_refused(fx: &Fx, text: &str, s: &str) -> VerifyError {
    let state = fx.state();
    refused(&state, |st| {
        check_manifest(st, text.as_bytes(), s.as_bytes(), None, &fx.clock())
    })
}

fn flip_bit(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

// --- signatures -------------------------------------------------------------------

#[test]
fn flipped_bit_in_manifest() {
    let fx = Fx::new();
    let (text, s) = fx.signed(&fx.manifest(1));
    let at = text.find("serial = 1").unwrap() + 9;
    let bad = flip_bit(text.as_bytes(), at); // serial 1 -> serial 0
    let state = fx.state();
    let e = refused(&state, |st| {
        check_manifest(st, &bad, s.as_bytes(), None, &fx.clock())
    });
    assert!(
        matches!(e, VerifyError::BadSignature { document: Document::Manifest, role: Role::Policy, keyid } if keyid == fx.policy.key_id()),
        "{e:?}"
    );
}

#[test]
fn flipped_bit_in_signature() {
    let fx = Fx::new();
    let (text, s) = fx.signed(&fx.manifest(1));
    // Flip one hex digit of the signature value.
    let at = s.find("sig = \"").unwrap() + 10;
    let mut bad = s.into_bytes();
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    let e = manifest_refused(&fx, &text, std::str::from_utf8(&bad).unwrap());
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e:?}");
}

#[test]
fn unknown_signer() {
    let fx = Fx::new();
    let text = fx.manifest(1).render().unwrap();
    let stranger = key(99);
    let s = sig(&[&stranger], Document::Manifest, text.as_bytes());
    match manifest_refused(&fx, &text, &s) {
        VerifyError::Threshold {
            document: Document::Manifest,
            valid: 0,
            threshold: 1,
            ignored,
            ..
        } => assert_eq!(ignored.0, vec![stranger.key_id()]),
        e => panic!("{e:?}"),
    }
}

/// A state whose root (version 2) needs two policy signatures from keys 10 and 11.
fn two_policy_keys(fx: &Fx) -> tenet_keys::TrustState {
    let second = key(11);
    let r2 = fx.next_root(|r| {
        r.keys.push(crate::util::entry(&second, "policy-2"));
        r.roles.policy = spec(&[&fx.policy, &second], 2);
    });
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    update_root(&fx.state(), text.as_bytes(), s.as_bytes()).unwrap()
}

#[test]
fn same_key_signing_twice_counts_once() {
    let fx = Fx::new();
    let state = two_policy_keys(&fx);
    let mut m = fx.manifest(1);
    m.root_version = 2;
    let text = m.render().unwrap();
    let s = sig(
        &[&fx.policy, &fx.policy],
        Document::Manifest,
        text.as_bytes(),
    );
    let e = refused(&state, |st| {
        check_manifest(st, text.as_bytes(), s.as_bytes(), None, &fx.clock())
    });
    assert!(
        matches!(
            e,
            VerifyError::Threshold {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // Both keys: accepted.
    let s = sig(&[&fx.policy, &key(11)], Document::Manifest, text.as_bytes());
    assert!(check_manifest(&state, text.as_bytes(), s.as_bytes(), None, &fx.clock()).is_ok());
}

#[test]
fn same_key_listed_twice_in_a_role() {
    let fx = Fx::new();
    let r2 = fx.next_root(|r| r.roles.policy = spec(&[&fx.policy, &fx.policy], 2));
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    let state = fx.state();
    let e = refused(&state, |st| update_root(st, text.as_bytes(), s.as_bytes()));
    assert!(
        matches!(
            e,
            VerifyError::InvalidRoot {
                version: 2,
                problem: RootProblem::DuplicateRoleKey {
                    role: Role::Policy,
                    ..
                }
            }
        ),
        "{e:?}"
    );
}

#[test]
fn timestamp_signature_replayed_as_manifest_signature() {
    let fx = Fx::new();
    let text = fx.manifest(1).render().unwrap();
    // The policy key's signature over the very bytes, but in the timestamp context.
    let s = sig(&[&fx.policy], Document::Timestamp, text.as_bytes());
    let e = manifest_refused(&fx, &text, &s);
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e:?}");
    // The timestamp key's signature does not count for the policy role at all.
    let s = sig(&[&fx.timestamp], Document::Timestamp, text.as_bytes());
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(e, VerifyError::Threshold { valid: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn malformed_signature_file() {
    let fx = Fx::new();
    let text = fx.manifest(1).render().unwrap();
    let e = manifest_refused(&fx, &text, "[[signature]]\nkeyid = \"zz\"\nsig = \"00\"\n");
    assert!(
        matches!(
            e,
            VerifyError::SignatureFile {
                problem: SigFileProblem::Parse(_),
                ..
            }
        ),
        "{e:?}"
    );
}

// --- ratchet ----------------------------------------------------------------------

#[test]
fn lower_serial_is_rollback() {
    let fx = Fx::new();
    let (state, _) = fx.state_at(5);
    let (text, s) = fx.signed(&fx.manifest(3));
    let e = refused(&state, |st| {
        check_manifest(st, text.as_bytes(), s.as_bytes(), None, &fx.clock())
    });
    assert!(
        matches!(
            e,
            VerifyError::Rollback {
                serial: 3,
                trusted_serial: 5,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "manifest serial 3 (epoch 1) is older than the trusted serial 5 (epoch 1); refusing rollback"
    );
}

#[test]
fn timestamp_naming_a_lower_serial_is_rollback() {
    let fx = Fx::new();
    let (state, _) = fx.state_at(5);
    let old = fx.manifest(4).render().unwrap();
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&old, NOW, t(NOW + 3600)));
    let e = refused(&state, |st| {
        check_timestamp(st, ts.as_bytes(), s.as_bytes(), &fx.clock())
    });
    assert!(
        matches!(e, VerifyError::Rollback { serial: 4, .. }),
        "{e:?}"
    );
}

#[test]
fn equal_serial_different_hash_is_equivocation() {
    let fx = Fx::new();
    let (state, _) = fx.state_at(5);
    let mut other = fx.manifest(5);
    other.members.clear();
    let (text, s) = fx.signed(&other);
    let e = refused(&state, |st| {
        check_manifest(st, text.as_bytes(), s.as_bytes(), None, &fx.clock())
    });
    assert!(
        matches!(e, VerifyError::Equivocation { serial: 5, .. }),
        "{e:?}"
    );
    // The same through a timestamp naming it.
    let (ts, tsig) = fx.signed_ts(&fx.timestamp_for(&text, NOW, t(NOW + 3600)));
    let e = refused(&state, |st| {
        check_timestamp(st, ts.as_bytes(), tsig.as_bytes(), &fx.clock())
    });
    assert!(
        matches!(e, VerifyError::Equivocation { serial: 5, .. }),
        "{e:?}"
    );
}

#[test]
fn older_epoch() {
    let fx = Fx::new();
    let r2 = fx.next_root(|r| r.policy_epoch = 2);
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[2]],
        Document::Root,
        text.as_bytes(),
    );
    let state = update_root(&fx.state(), text.as_bytes(), s.as_bytes()).unwrap();
    let (m, ms) = fx.signed(&fx.manifest(100));
    let e = refused(&state, |st| {
        check_manifest(st, m.as_bytes(), ms.as_bytes(), None, &fx.clock())
    });
    assert!(
        matches!(
            e,
            VerifyError::Epoch {
                epoch: 1,
                root_epoch: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn root_update_lowering_the_epoch() {
    let fx = Fx::new();
    let r2 = fx.next_root(|r| r.policy_epoch = 0);
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    let state = fx.state();
    let e = refused(&state, |st| update_root(st, text.as_bytes(), s.as_bytes()));
    assert!(
        matches!(e, VerifyError::RootEpoch { old: 1, new: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn manifest_naming_a_newer_root() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    m.root_version = 2;
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(
            e,
            VerifyError::ManifestRootVersion {
                manifest: 2,
                trusted: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

// --- freshness --------------------------------------------------------------------

#[test]
fn expired_manifest() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    m.created = t(NOW - 20 * DAY);
    m.expires = t(NOW - DAY);
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(
            e,
            VerifyError::Expired {
                document: Document::Manifest,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn expired_timestamp() {
    let fx = Fx::new();
    let (m, _) = fx.signed(&fx.manifest(1));
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&m, NOW - 7 * 3600, t(NOW - 3600)));
    let state = fx.state();
    let e = refused(&state, |st| {
        check_timestamp(st, ts.as_bytes(), s.as_bytes(), &fx.clock())
    });
    assert!(
        matches!(
            e,
            VerifyError::Expired {
                document: Document::Timestamp,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn created_far_in_the_future() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    m.created = t(NOW + 3600);
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(
            e,
            VerifyError::CreatedInFuture {
                max_skew_secs: 900,
                ..
            }
        ),
        "{e:?}"
    );
    // Within the skew: accepted.
    let mut m = fx.manifest(1);
    m.created = t(NOW + 600);
    let (text, s) = fx.signed(&m);
    assert!(
        check_manifest(
            &fx.state(),
            text.as_bytes(),
            s.as_bytes(),
            None,
            &fx.clock()
        )
        .is_ok()
    );
}

// --- timestamp → manifest binding -------------------------------------------------

fn newer(
    fx: &Fx,
    manifest_text: &str,
    edit: impl FnOnce(&mut tenet_keys::Timestamp),
) -> tenet_keys::ExpectedManifest {
    let mut ts = fx.timestamp_for(manifest_text, NOW, t(NOW + 3600));
    edit(&mut ts);
    let (text, s) = fx.signed_ts(&ts);
    match check_timestamp(&fx.state(), text.as_bytes(), s.as_bytes(), &fx.clock()).unwrap() {
        TimestampOutcome::Newer(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn timestamp_naming_a_different_hash() {
    let fx = Fx::new();
    let (text, s) = fx.signed(&fx.manifest(1));
    let expected = newer(&fx, &text, |ts| {
        ts.manifest.sha256 = Sha256Sum::of(b"other")
    });
    let state = fx.state();
    let e = refused(&state, |st| {
        check_manifest(
            st,
            text.as_bytes(),
            s.as_bytes(),
            Some(&expected),
            &fx.clock(),
        )
    });
    assert!(matches!(e, VerifyError::ManifestHash { .. }), "{e:?}");
}

#[test]
fn timestamp_naming_a_different_size() {
    let fx = Fx::new();
    let (text, s) = fx.signed(&fx.manifest(1));
    let expected = newer(&fx, &text, |ts| ts.manifest.size -= 1);
    let state = fx.state();
    let e = refused(&state, |st| {
        check_manifest(
            st,
            text.as_bytes(),
            s.as_bytes(),
            Some(&expected),
            &fx.clock(),
        )
    });
    assert!(matches!(e, VerifyError::ManifestSize { .. }), "{e:?}");
}

#[test]
fn timestamp_naming_a_different_serial() {
    let fx = Fx::new();
    let (text, s) = fx.signed(&fx.manifest(1));
    // Hash and size of this manifest, but a serial it does not have.
    let expected = newer(&fx, &text, |ts| ts.manifest.serial = 2);
    let state = fx.state();
    let e = refused(&state, |st| {
        check_manifest(
            st,
            text.as_bytes(),
            s.as_bytes(),
            Some(&expected),
            &fx.clock(),
        )
    });
    assert!(
        matches!(
            e,
            VerifyError::ManifestNotNamed {
                serial: 1,
                expected_serial: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

// --- deployment -------------------------------------------------------------------

#[test]
fn manifest_from_another_deployment() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    m.deployment = "ffffffffffffffffffffffffffffffff".parse().unwrap();
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(
            e,
            VerifyError::Deployment {
                document: Document::Manifest,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn timestamp_from_another_deployment() {
    let fx = Fx::new();
    let (m, _) = fx.signed(&fx.manifest(1));
    let mut ts = fx.timestamp_for(&m, NOW, t(NOW + 3600));
    ts.deployment = "ffffffffffffffffffffffffffffffff".parse().unwrap();
    let (text, s) = fx.signed_ts(&ts);
    let state = fx.state();
    let e = refused(&state, |st| {
        check_timestamp(st, text.as_bytes(), s.as_bytes(), &fx.clock())
    });
    assert!(
        matches!(
            e,
            VerifyError::Deployment {
                document: Document::Timestamp,
                ..
            }
        ),
        "{e:?}"
    );
}

// --- paths and inventory ----------------------------------------------------------

fn path_case(path: &str) -> VerifyError {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    m.files[0].path = path.to_string();
    let (text, s) = fx.signed(&m);
    manifest_refused(&fx, &text, &s)
}

fn assert_unsafe(path: &str, expected: PathProblem) {
    match path_case(path) {
        VerifyError::UnsafePath { problem, .. } => assert_eq!(problem, expected, "{path:?}"),
        e => panic!("{path:?}: {e:?}"),
    }
}

#[test]
fn path_with_parent_component() {
    assert_unsafe("files/../../etc/shadow", PathProblem::ParentDir);
}

#[test]
fn absolute_path() {
    assert_unsafe("/etc/shadow", PathProblem::Absolute);
}

#[test]
fn path_with_nul() {
    assert_unsafe("files/motd\0.toml", PathProblem::Nul);
}

#[test]
fn path_with_backslash() {
    assert_unsafe("files\\..\\motd", PathProblem::Backslash);
}

#[test]
fn path_with_empty_component() {
    assert_unsafe("files//motd", PathProblem::EmptyComponent);
}

#[test]
fn path_with_dot_component() {
    assert_unsafe("./files/motd", PathProblem::CurDir);
}

#[test]
fn duplicate_path() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    let dup = m.files[1].clone();
    m.files.push(dup);
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(&e, VerifyError::DuplicatePath { path } if path == "files/motd"),
        "{e:?}"
    );
}

#[test]
fn member_inventory_with_a_duplicate_key_id() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    let mut twin = m.members[0].clone();
    twin.name = "beta".to_string();
    m.members.push(twin);
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(&e, VerifyError::DuplicateMemberKey { first, second, .. } if first == "alpha" && second == "beta"),
        "{e:?}"
    );
}

// --- blobs ------------------------------------------------------------------------

fn bundle_refused(edit: impl FnOnce(&std::path::Path, &Fx)) -> VerifyError {
    let fx = Fx::new();
    let dir = tempfile::tempdir().unwrap();
    let (text, s) = fx.signed(&fx.manifest(1));
    let b = fx.write_bundle(dir.path(), &text, &s);
    // The untouched bundle verifies.
    assert!(verify_bundle(&fx.state(), &b, &fx.clock()).is_ok());
    edit(&b, &fx);
    let state = fx.state();
    refused(&state, |st| verify_bundle(st, &b, &fx.clock()))
}

fn motd_blob(b: &std::path::Path, fx: &Fx) -> std::path::PathBuf {
    bundle::blob_path(b, &Sha256Sum::of(&fx.files[1].1))
}

#[test]
fn flipped_bit_in_a_blob() {
    let e = bundle_refused(|b, fx| {
        let p = motd_blob(b, fx);
        let bytes = std::fs::read(&p).unwrap();
        write(&p, &flip_bit(&bytes, 0));
    });
    assert!(
        matches!(&e, VerifyError::BlobHash { path, .. } if path == "files/motd"),
        "{e:?}"
    );
}

#[test]
fn blob_larger_than_declared() {
    let e = bundle_refused(|b, fx| {
        let p = motd_blob(b, fx);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(&[b'x'; 100_000]);
        write(&p, &bytes);
    });
    assert!(
        matches!(&e, VerifyError::BlobTooLarge { path, declared: 8 } if path == "files/motd"),
        "{e:?}"
    );
}

#[test]
fn endless_blob_stream_is_cut_at_the_declared_size() {
    let entry = FileEntry {
        path: "files/motd".to_string(),
        sha256: Sha256Sum::of(b"welcome\n"),
        size: 8,
    };
    // io::repeat never ends: a reader that hashed everything would never return.
    let e = check_blob_stream(&entry, io::repeat(b'x'), io::sink()).unwrap_err();
    assert!(
        matches!(e, VerifyError::BlobTooLarge { declared: 8, .. }),
        "{e:?}"
    );
    let e = check_blob(&entry, b"welcome\n!").unwrap_err();
    assert!(matches!(e, VerifyError::BlobTooLarge { .. }), "{e:?}");
    assert!(check_blob(&entry, b"welcome\n").is_ok());
}

#[test]
fn blob_of_the_right_size_with_the_wrong_hash() {
    let e = bundle_refused(|b, fx| write(&motd_blob(b, fx), b"WELCOME\n"));
    assert!(matches!(e, VerifyError::BlobHash { .. }), "{e:?}");
}

#[test]
fn blob_smaller_than_declared() {
    let e = bundle_refused(|b, fx| write(&motd_blob(b, fx), b"welc"));
    assert!(
        matches!(
            e,
            VerifyError::BlobTooSmall {
                declared: 8,
                found: 4,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn missing_blob() {
    let e = bundle_refused(|b, fx| std::fs::remove_file(motd_blob(b, fx)).unwrap());
    assert!(
        matches!(&e, VerifyError::MissingBlob { path, .. } if path == "files/motd"),
        "{e:?}"
    );
}

#[test]
fn blob_that_is_a_symlink() {
    let e = bundle_refused(|b, fx| {
        let p = motd_blob(b, fx);
        std::fs::remove_file(&p).unwrap();
        crate::util::symlink("/etc/hostname", &p);
    });
    assert!(matches!(e, VerifyError::BlobNotFile { .. }), "{e:?}");
}

/// A FIFO in place of a blob is refused as not a file; opening it does not wait for
/// a writer (the test would hang if it did).
#[test]
fn blob_that_is_a_fifo() {
    let e = bundle_refused(|b, fx| {
        let p = motd_blob(b, fx);
        std::fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    });
    assert!(matches!(e, VerifyError::BlobNotFile { .. }), "{e:?}");
}

#[test]
fn missing_manifest_signature_file() {
    let e = bundle_refused(|b, _| {
        std::fs::remove_file(bundle::sig_path(&b.join(bundle::MANIFEST))).unwrap()
    });
    assert!(matches!(e, VerifyError::Read { .. }), "{e:?}");
}

// --- size caps and parsing (after signatures) -------------------------------------

#[test]
fn oversized_manifest_is_refused_before_parsing() {
    let fx = Fx::new();
    // 16 MiB + 1 of garbage with no signature: were the signatures checked (or the
    // bytes parsed) before the size, the error would be a threshold (or parse) error.
    let text = "x".repeat(16 * 1024 * 1024 + 1);
    let e = manifest_refused(&fx, &text, "");
    assert!(
        matches!(
            e,
            VerifyError::TooLarge {
                document: Document::Manifest,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn oversized_timestamp_and_root_are_refused_before_parsing() {
    let fx = Fx::new();
    let state = fx.state();
    let text = format!("# {}\n", "x".repeat(4096));
    let s = sig(&[&fx.timestamp], Document::Timestamp, text.as_bytes());
    let e = refused(&state, |st| {
        check_timestamp(st, text.as_bytes(), s.as_bytes(), &fx.clock())
    });
    assert!(
        matches!(
            e,
            VerifyError::TooLarge {
                document: Document::Timestamp,
                max: 4096,
                ..
            }
        ),
        "{e:?}"
    );
    let text = "y".repeat(64 * 1024 + 1);
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    let e = refused(&state, |st| update_root(st, text.as_bytes(), s.as_bytes()));
    assert!(
        matches!(
            e,
            VerifyError::TooLarge {
                document: Document::Root,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn garbage_with_a_bad_signature_is_a_signature_error_not_a_parse_error() {
    let fx = Fx::new();
    let text = "\u{0}\u{1}not toml at all [[[";
    let s = sig(&[&key(99)], Document::Manifest, text.as_bytes());
    let e = manifest_refused(&fx, text, &s);
    assert!(matches!(e, VerifyError::Threshold { .. }), "{e:?}");
}

#[test]
fn unknown_field() {
    let fx = Fx::new();
    let text = fx.manifest(1).render().unwrap().replacen(
        "root_version = 1\n",
        "root_version = 1\nrun_command = \"rm -rf /\"\n",
        1,
    );
    let s = sig(&[&fx.policy], Document::Manifest, text.as_bytes());
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(
            e,
            VerifyError::Parse {
                document: Document::Manifest,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_schema() {
    let fx = Fx::new();
    let text = fx
        .manifest(1)
        .render()
        .unwrap()
        .replacen("schema = 1", "schema = 2", 1);
    let s = sig(&[&fx.policy], Document::Manifest, text.as_bytes());
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(&e, VerifyError::Schema { found, .. } if found == "2"),
        "{e:?}"
    );
}

#[test]
fn wrong_kind() {
    let fx = Fx::new();
    // A timestamp, signed by the policy key in the manifest context, offered as a manifest.
    let (m, _) = fx.signed(&fx.manifest(1));
    let ts = fx.timestamp_for(&m, NOW, t(NOW + 3600)).render().unwrap();
    let s = sig(&[&fx.policy], Document::Manifest, ts.as_bytes());
    let e = manifest_refused(&fx, &ts, &s);
    assert!(
        matches!(&e, VerifyError::Kind { found, .. } if found == "timestamp"),
        "{e:?}"
    );
}

// --- root updates -----------------------------------------------------------------

fn root_update_refused(r2: &tenet_keys::Root, signers: &[&tenet_keys::SecretKey]) -> VerifyError {
    let fx = Fx::new();
    let text = r2.render().unwrap();
    let s = sig(signers, Document::Root, text.as_bytes());
    let state = fx.state();
    refused(&state, |st| update_root(st, text.as_bytes(), s.as_bytes()))
}

#[test]
fn root_update_skipping_a_version() {
    let fx = Fx::new();
    let r3 = fx.next_root(|r| r.version = 3);
    let e = root_update_refused(&r3, &[&fx.root_keys[0], &fx.root_keys[1]]);
    assert!(
        matches!(
            e,
            VerifyError::RootVersion {
                expected: 2,
                found: 3
            }
        ),
        "{e:?}"
    );
}

#[test]
fn root_update_lacking_the_old_keys_threshold() {
    let fx = Fx::new();
    // New root keys 4, 5 (threshold 2); only one old root key signs.
    let (k4, k5) = (key(4), key(5));
    let r2 = fx.next_root(|r| {
        r.keys.push(crate::util::entry(&k4, "root-4"));
        r.keys.push(crate::util::entry(&k5, "root-5"));
        r.roles.root = spec(&[&k4, &k5], 2);
    });
    let e = root_update_refused(&r2, &[&fx.root_keys[0], &k4, &k5]);
    assert!(
        matches!(
            e,
            VerifyError::OldRootThreshold {
                version: 2,
                trusted_version: 1,
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn root_update_lacking_the_new_keys_threshold() {
    let fx = Fx::new();
    let (k4, k5) = (key(4), key(5));
    let r2 = fx.next_root(|r| {
        r.keys.push(crate::util::entry(&k4, "root-4"));
        r.keys.push(crate::util::entry(&k5, "root-5"));
        r.roles.root = spec(&[&k4, &k5], 2);
    });
    let e = root_update_refused(&r2, &[&fx.root_keys[0], &fx.root_keys[1], &k4]);
    assert!(
        matches!(
            e,
            VerifyError::NewRootThreshold {
                version: 2,
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn root_from_another_deployment() {
    let fx = Fx::new();
    let r2 = fx.next_root(|r| r.deployment = "ffffffffffffffffffffffffffffffff".parse().unwrap());
    let e = root_update_refused(&r2, &[&fx.root_keys[0], &fx.root_keys[1]]);
    assert!(
        matches!(
            e,
            VerifyError::Deployment {
                document: Document::Root,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn expired_root_after_update() {
    let fx = Fx::new();
    let r2 = fx.next_root(|r| r.expires = t(NOW - 1));
    let text = r2.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    // The update itself is accepted (intermediate roots may be expired)...
    let state = update_root(&fx.state(), text.as_bytes(), s.as_bytes()).unwrap();
    // ...but the final root must be fresh.
    let e = refused(&state, |st| check_root_fresh(st, &fx.clock()));
    assert!(
        matches!(
            e,
            VerifyError::Expired {
                document: Document::Root,
                ..
            }
        ),
        "{e:?}"
    );
    // And a bundle carrying it is refused.
    let dir = tempfile::tempdir().unwrap();
    let (m, ms) = fx.signed(&fx.manifest(1));
    let b = fx.write_bundle(dir.path(), &m, &ms);
    write(&bundle::root_path(&b, 2), text.as_bytes());
    write(&bundle::sig_path(&bundle::root_path(&b, 2)), s.as_bytes());
    let start = fx.state();
    let e = refused(&start, |st| verify_bundle(st, &b, &fx.clock()));
    assert!(
        matches!(
            e,
            VerifyError::Expired {
                document: Document::Root,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn root_file_whose_version_does_not_match_its_name() {
    let fx = Fx::new();
    let r3 = fx.next_root(|r| r.version = 3);
    let text = r3.render().unwrap();
    let s = sig(
        &[&fx.root_keys[0], &fx.root_keys[1]],
        Document::Root,
        text.as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (m, ms) = fx.signed(&fx.manifest(1));
    let b = fx.write_bundle(dir.path(), &m, &ms);
    write(&bundle::root_path(&b, 2), text.as_bytes());
    write(&bundle::sig_path(&bundle::root_path(&b, 2)), s.as_bytes());
    let state = fx.state();
    let e = refused(&state, |st| verify_bundle(st, &b, &fx.clock()));
    assert!(
        matches!(
            e,
            VerifyError::RootVersion {
                expected: 2,
                found: 3
            }
        ),
        "{e:?}"
    );
}

#[test]
fn bootstrap_root_with_the_wrong_pin() {
    let fx = Fx::new();
    let e = TrustedRoot::bootstrap(
        fx.root_text.as_bytes(),
        fx.root_sig.as_bytes(),
        Some(Sha256Sum::of(b"another root")),
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::RootPin { .. }), "{e:?}");
}

#[test]
fn bootstrap_root_without_its_own_threshold() {
    let fx = Fx::new();
    let s = sig(&[&fx.root_keys[0]], Document::Root, fx.root_text.as_bytes());
    let e = TrustedRoot::bootstrap(fx.root_text.as_bytes(), s.as_bytes(), None).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::NewRootThreshold {
                version: 1,
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A staged bundle is verified from its files: a manifest known from the fetch is
/// reused only for the very bytes it came from, so bytes changed on disk after the
/// check are read, and refused, as if nothing were known.
#[test]
fn a_staged_manifest_is_reused_only_for_the_same_bytes() {
    use tenet_keys::{Known, verify_bundle_staged};
    let fx = Fx::new();
    let dir = tempfile::tempdir().unwrap();
    let (text, s) = fx.signed(&fx.manifest(1));
    let b = fx.write_bundle(dir.path(), &text, &s);
    let known = |serial: u64, bytes: &str| Known {
        sha256: Sha256Sum::of(bytes.as_bytes()),
        manifest: fx.manifest(serial),
    };
    // The same bytes: verifies, with the known parse.
    let v = verify_bundle_staged(&fx.state(), &b, &fx.clock(), known(1, &text)).unwrap();
    assert_eq!(v.manifest().serial, 1);
    // A parse that came from other bytes is not used: the file on disk is parsed.
    let v = verify_bundle_staged(&fx.state(), &b, &fx.clock(), known(7, "other")).unwrap();
    assert_eq!(v.manifest().serial, 1);
    // The manifest changed on disk after it was checked: refused on its signature.
    write(
        &b.join(bundle::MANIFEST),
        format!("{text}\n# appended\n").as_bytes(),
    );
    let state = fx.state();
    let e = refused(&state, |st| {
        verify_bundle_staged(st, &b, &fx.clock(), known(1, &text))
    });
    assert!(matches!(e, VerifyError::BadSignature { .. }), "{e:?}");
}

/// One hash cannot name two sizes: a signed manifest that says so is refused, so a
/// member never stores a blob under a name one entry contradicts.
#[test]
fn one_hash_with_two_sizes() {
    let fx = Fx::new();
    let mut m = fx.manifest(1);
    let mut twin = m.files[0].clone();
    twin.path = "files/twin".to_string();
    twin.size += 1;
    m.files.push(twin);
    let (text, s) = fx.signed(&m);
    let e = manifest_refused(&fx, &text, &s);
    assert!(
        matches!(e, VerifyError::ConflictingBlobSize { ref path, .. } if path == "files/twin"),
        "{e:?}"
    );
}

// --- timestamp freeze and cached bundles --------------------------------------------

/// 2100-01-01: the version a timestamp signed to freeze members carries.
const YEAR_2100: u64 = 4_102_444_800;

/// A state trusting serial 1 with timestamp version `version`, as a verifier that did
/// not bound versions would have persisted it.
fn pinned_at(fx: &Fx, version: u64) -> TrustState {
    let (state, _) = fx.state_at(1);
    let text = state.to_toml().unwrap();
    assert!(text.contains("timestamp_version = 0\n"), "{text}");
    let text = text.replace(
        "timestamp_version = 0\n",
        &format!("timestamp_version = {version}\n"),
    );
    TrustState::from_toml(&text).unwrap()
}

#[test]
fn finding_02_a_far_future_timestamp_version_is_refused_and_pins_nothing() {
    let fx = Fx::new();
    let (state, m1) = fx.state_at(1);
    let (m2, _) = fx.signed(&fx.manifest(2));
    for (manifest, version) in [(&m1, YEAR_2100), (&m2, YEAR_2100), (&m1, NOW + 301)] {
        let (ts, s) = fx.signed_ts(&fx.timestamp_for(manifest, version, t(NOW + 3600)));
        let e = refused(&state, |st| {
            check_timestamp(st, ts.as_bytes(), s.as_bytes(), &fx.clock())
        });
        assert!(
            matches!(e, VerifyError::TimestampInFuture { version: v, max_skew_secs: 300, .. } if v == version),
            "{e:?}"
        );
    }
    // At the edge of the skew: accepted.
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&m1, NOW + 300, t(NOW + 3600)));
    match check_timestamp(&state, ts.as_bytes(), s.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Current { state: next, .. }) => {
            assert_eq!(next.timestamp_version(), NOW + 300);
            assert_eq!(next.timestamp_expires(), Some(t(NOW + 3600)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn finding_02_a_member_pinned_by_a_far_future_version_takes_the_next_valid_timestamp() {
    let fx = Fx::new();
    let pinned = pinned_at(&fx, YEAR_2100);
    let (_, m1) = fx.state_at(1);
    // The master's real timestamp for the serial in force replaces the pinned version.
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&m1, NOW, t(NOW + 3600)));
    match check_timestamp(&pinned, ts.as_bytes(), s.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Current { state, .. }) => {
            assert_eq!(state.timestamp_version(), NOW);
        }
        other => panic!("{other:?}"),
    }
    // A newer serial is followed, and its timestamp becomes the trusted version.
    let (m2, m2s) = fx.signed(&fx.manifest(2));
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&m2, NOW, t(NOW + 3600)));
    let expected = match check_timestamp(&pinned, ts.as_bytes(), s.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Newer(e)) => e,
        other => panic!("{other:?}"),
    };
    let (state, _) = check_manifest(
        &pinned,
        m2.as_bytes(),
        m2s.as_bytes(),
        Some(&expected),
        &fx.clock(),
    )
    .unwrap();
    assert_eq!((state.serial(), state.timestamp_version()), (2, NOW));
    // A version ahead within the skew is still a floor: an older one is ignored.
    let near = pinned_at(&fx, NOW + 200);
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&m1, NOW, t(NOW + 3600)));
    assert_eq!(
        check_timestamp(&near, ts.as_bytes(), s.as_bytes(), &fx.clock()).unwrap(),
        TimestampOutcome::Ignored {
            offered: NOW,
            trusted: NOW + 200
        }
    );
}

#[test]
fn finding_02_an_older_timestamp_naming_a_newer_serial_is_still_followed() {
    let fx = Fx::new();
    let state = pinned_at(&fx, NOW);
    let (m1, _) = fx.signed(&fx.manifest(1));
    let (m2, m2s) = fx.signed(&fx.manifest(2));
    // Older, naming a newer serial: fetch it; its signature and serial decide.
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&m2, NOW - 10, t(NOW + 3600)));
    let expected = match check_timestamp(&state, ts.as_bytes(), s.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Newer(e)) => e,
        other => panic!("{other:?}"),
    };
    let (next, _) = check_manifest(
        &state,
        m2.as_bytes(),
        m2s.as_bytes(),
        Some(&expected),
        &fx.clock(),
    )
    .unwrap();
    assert_eq!(next.serial(), 2);
    assert_eq!(
        next.timestamp_version(),
        NOW,
        "an older version lowers nothing"
    );
    // A forged manifest behind it is still refused by its signature.
    let (bad, _) = fx.signed(&fx.manifest(3));
    let forged = sig(&[&key(99)], Document::Manifest, bad.as_bytes());
    let (ts, s) = fx.signed_ts(&fx.timestamp_for(&bad, NOW - 10, t(NOW + 3600)));
    let expected = match check_timestamp(&state, ts.as_bytes(), s.as_bytes(), &fx.clock()) {
        Ok(TimestampOutcome::Newer(e)) => e,
        other => panic!("{other:?}"),
    };
    let e = refused(&state, |st| {
        check_manifest(
            st,
            bad.as_bytes(),
            forged.as_bytes(),
            Some(&expected),
            &fx.clock(),
        )
    });
    assert!(
        matches!(e, VerifyError::Threshold { valid: 0, .. }),
        "{e:?}"
    );
    // Older and naming the serial in force, or an older one: ignored, quietly.
    for m in [&m1, &fx.signed(&fx.manifest(0)).0] {
        let (ts, s) = fx.signed_ts(&fx.timestamp_for(m, NOW - 10, t(NOW + 3600)));
        assert!(
            matches!(
                check_timestamp(&state, ts.as_bytes(), s.as_bytes(), &fx.clock()),
                Ok(TimestampOutcome::Ignored { .. })
            ),
            "serial named: {m}"
        );
    }
}

#[test]
fn finding_07_an_edited_cached_manifest_is_refused_even_once_root_and_manifest_expired() {
    let fx = Fx::new();
    let dir = tempfile::tempdir().unwrap();
    let (m, ms) = fx.signed(&fx.manifest(1));
    let b = fx.write_bundle(dir.path(), &m, &ms);
    let state = verify_bundle(&fx.state(), &b, &fx.clock())
        .unwrap()
        .into_state();
    // A year later root and manifest have expired: enforced with both expiries noted.
    let later = tenet_keys::Clock::new(t(NOW + 400 * DAY));
    assert!(matches!(
        verify_bundle_stored(&state, &b, &later),
        Err(VerifyError::Expired { .. })
    ));
    let cached = verify_cached(&state, &b, &later).unwrap();
    assert_eq!(cached.manifest().serial, 1);
    let documents: Vec<Document> = cached
        .expired()
        .iter()
        .map(|e| match e {
            VerifyError::Expired { document, .. } => *document,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(documents, [Document::Root, Document::Manifest]);
    // The same bundle with an entry added to its manifest: refused on its signature,
    // expired or not; nothing of it is returned.
    let mut edited = m.clone();
    edited.push_str(&format!(
        "\n[[file]]\npath = \"evil.toml\"\nsha256 = \"{}\"\nsize = 3\n",
        Sha256Sum::of(b"x=1")
    ));
    write(&b.join(bundle::MANIFEST), edited.as_bytes());
    for clock in [fx.clock(), later] {
        let e = refused(&state, |st| verify_cached(st, &b, &clock));
        assert!(
            matches!(
                e,
                VerifyError::BadSignature {
                    document: Document::Manifest,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // A validly signed manifest of another serial 1 (equivocation) is refused too.
    let mut other = fx.manifest(1);
    other.members.clear();
    let (ot, os) = fx.signed(&other);
    write(&b.join(bundle::MANIFEST), ot.as_bytes());
    write(&bundle::sig_path(&b.join(bundle::MANIFEST)), os.as_bytes());
    let e = refused(&state, |st| verify_cached(st, &b, &later));
    assert!(matches!(e, VerifyError::Equivocation { .. }), "{e:?}");
}

/// The member's clock steps back an hour (an RTC behind at boot, NTP not yet synced;
/// the node that takes over after a crash has often just booted). The cached bundle,
/// accepted by its exact hash when the clock was right, still verifies: `event` (the
/// takeover) and a `run` with no master keep their policy. A manifest the ratchet has
/// not accepted yet is still judged against the clock, and an edited one is refused.
#[test]
fn finding_07_the_cached_bundle_still_verifies_when_the_clock_steps_back() {
    let fx = Fx::new();
    let dir = tempfile::tempdir().unwrap();
    let (m, ms) = fx.signed(&fx.manifest(1));
    let b = fx.write_bundle(dir.path(), &m, &ms);
    let state = verify_bundle(&fx.state(), &b, &fx.clock())
        .unwrap()
        .into_state();
    let behind = tenet_keys::Clock::new(t(NOW - 3600));
    let cached = verify_cached(&state, &b, &behind).unwrap();
    assert_eq!(cached.manifest().serial, 1);
    assert!(cached.expired().is_empty(), "{:?}", cached.expired());

    // Serial 2 in the cache, not yet in the ratchet (a run stopped between switching
    // the bundle and persisting the state): its `created` is still checked.
    let (m2, m2s) = fx.signed(&fx.manifest(2));
    write(&b.join(bundle::MANIFEST), m2.as_bytes());
    write(&bundle::sig_path(&b.join(bundle::MANIFEST)), m2s.as_bytes());
    let e = refused(&state, |st| verify_cached(st, &b, &behind));
    assert!(matches!(e, VerifyError::CreatedInFuture { .. }), "{e:?}");

    // The trusted manifest with an entry added: refused on its signature.
    let mut edited = m.clone();
    edited.push_str(&format!(
        "\n[[file]]\npath = \"evil.toml\"\nsha256 = \"{}\"\nsize = 3\n",
        Sha256Sum::of(b"x=1")
    ));
    write(&b.join(bundle::MANIFEST), edited.as_bytes());
    write(&bundle::sig_path(&b.join(bundle::MANIFEST)), ms.as_bytes());
    let e = refused(&state, |st| verify_cached(st, &b, &behind));
    assert!(
        matches!(
            e,
            VerifyError::BadSignature {
                document: Document::Manifest,
                ..
            }
        ),
        "{e:?}"
    );
}
