//! The `tenet-keys` binary: the whole publishing flow in temp directories, and its
//! refusals with their exit codes.
#![expect(
    clippy::disallowed_methods,
    reason = "tests start the binary under test and write fixtures directly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tenet_keys::{Document, Root};

use crate::util::{key, sig, write};

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenet-keys"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run tenet-keys")
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let o = run(args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn fails(code: i32, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let o = run(args);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/dce-cluster")
}

/// A deployment with alpha enrolled, in `tmp/dep`.
fn deployment(tmp: &Path) -> PathBuf {
    let dep = tmp.join("dep");
    ok(&[
        &"init",
        &dep,
        &"--root-keys",
        &"3",
        &"--root-threshold",
        &"2",
    ]);
    let id = ok(&[&"node-key", &"--out", &tmp.join("node")]);
    let id = id.lines().next().unwrap().trim().to_string();
    let out = ok(&[&"enroll", &dep, &"--member", &"alpha", &"--key-id", &id]);
    assert!(out.contains("enrolled member alpha"), "{out}");
    dep
}

#[test]
fn init_node_key_enroll_sign_timestamp_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let bundle = tmp.path().join("bundle");
    let o = run(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &bundle,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("member beta has no enrolled key"), "{err}");
    ok(&[
        &"timestamp",
        &bundle,
        &"--key",
        &dep.join("keys/timestamp.key"),
        &"--deployment",
        &dep,
    ]);
    let out = ok(&[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")]);
    assert!(out.contains("serial      1"), "{out}");
    // cluster.toml, dce.toml, plans.toml, files/motd-dce
    assert!(out.contains("files       4"), "{out}");
    assert!(out.contains("alpha"), "{out}");
    assert!(out.contains("timestamp   version"), "{out}");

    // Key files are private.
    use std::os::unix::fs::PermissionsExt;
    for k in ["root-1", "policy", "timestamp", "server-tls"] {
        let mode = std::fs::metadata(dep.join(format!("keys/{k}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{k}");
    }
    assert_eq!(
        std::fs::metadata(tmp.path().join("node/localhost.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The next serial is 2; asking for 1 again is refused.
    let b2 = tmp.path().join("bundle2");
    let err = fails(
        3,
        &[
            &"sign",
            &example_tree(),
            &"--deployment",
            &dep,
            &"--out",
            &b2,
            &"--serial",
            &"1",
        ],
    );
    assert!(
        err.contains("serial 1 is not greater than the last serial 1"),
        "{err}"
    );
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b2,
    ]);
    let out = ok(&[&"verify", &b2, &"--root", &dep.join("root/1.root.toml")]);
    assert!(out.contains("serial      2"), "{out}");

    // Revoked members drop out of the next manifest.
    ok(&[&"revoke", &dep, &"--member", &"alpha"]);
    let b3 = tmp.path().join("bundle3");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b3,
    ]);
    let out = ok(&[&"verify", &b3, &"--root", &dep.join("root/1.root.toml")]);
    assert!(out.contains("members     0"), "{out}");
}

#[test]
fn tampered_bundle_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let bundle = tmp.path().join("bundle");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &bundle,
    ]);
    let blobs: Vec<_> = std::fs::read_dir(bundle.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut bytes = std::fs::read(&blobs[0]).unwrap();
    bytes[0] ^= 0x20;
    write(&blobs[0], &bytes);
    let err = fails(
        4,
        &[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")],
    );
    assert!(
        err.contains("error: blob for") && err.contains("has sha256"),
        "{err}"
    );

    // A bundle verified against another deployment's root is refused.
    let other = tmp.path().join("other");
    ok(&[
        &"init",
        &other,
        &"--root-keys",
        &"1",
        &"--root-threshold",
        &"1",
    ]);
    let err = fails(
        4,
        &[
            &"verify",
            &bundle,
            &"--root",
            &other.join("root/1.root.toml"),
        ],
    );
    assert!(err.contains("error: "), "{err}");

    // Verified in the future, the manifest has expired.
    let b2 = tmp.path().join("b2");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b2,
    ]);
    let err = fails(
        4,
        &[
            &"verify",
            &b2,
            &"--root",
            &dep.join("root/1.root.toml"),
            &"--now",
            &"2099-01-01T00:00:00Z",
        ],
    );
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn invalid_policy_is_never_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let tree = tmp.path().join("tree");
    write(
        &tree.join("bad.toml"),
        b"[[file]]\npath = \"relative\"\nmode = 7\n",
    );
    let bundle = tmp.path().join("bundle");
    let err = fails(
        3,
        &[&"sign", &tree, &"--deployment", &dep, &"--out", &bundle],
    );
    assert!(err.contains("bad.toml:"), "{err}");
    assert!(err.contains("is invalid"), "{err}");
    assert!(!bundle.exists());
    // The serial was not consumed.
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &bundle,
    ]);
    let out = ok(&[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")]);
    assert!(out.contains("serial      1"), "{out}");
}

#[test]
fn unsigned_bundle_then_attest_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let bundle = tmp.path().join("bundle");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &bundle,
        &"--unsigned",
    ]);
    let manifest = bundle.join("manifest.toml");
    assert!(!bundle.join("manifest.toml.sig").exists());
    let err = fails(
        4,
        &[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")],
    );
    assert!(err.contains("manifest.toml.sig"), "{err}");

    // The timestamp key is not a policy key.
    let err = fails(
        4,
        &[
            &"attest",
            &manifest,
            &"--key",
            &dep.join("keys/timestamp.key"),
            &"--deployment",
            &dep,
        ],
    );
    assert!(err.contains("is not a policy key"), "{err}");
    let out = ok(&[
        &"attest",
        &manifest,
        &"--key",
        &dep.join("keys/policy.key"),
        &"--deployment",
        &dep,
    ]);
    assert!(
        out.contains("manifest") && out.contains("signed by"),
        "{out}"
    );
    let out = ok(&[&"attest", &manifest, &"--key", &dep.join("keys/policy.key")]);
    assert!(out.contains("already signed"), "{out}");
    ok(&[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")]);
}

#[test]
fn root_update_signed_with_attest() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    // Root 2: the same keys, a new policy epoch.
    let out = ok(&[&"root-next", &dep, &"--bump-epoch"]);
    assert!(out.contains("root version 2 written (unsigned)"), "{out}");
    let r2_path = dep.join("root/2.root.toml");
    let r2 = Root::parse(&std::fs::read(&r2_path).unwrap()).unwrap();
    assert_eq!((r2.version, r2.policy_epoch), (2, 2));

    // Signed by one root key only, it is pending and not used.
    ok(&[
        &"attest",
        &r2_path,
        &"--key",
        &dep.join("keys/root-1.key"),
        &"--deployment",
        &dep,
    ]);
    let b1 = tmp.path().join("b1");
    let o = run(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b1,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("root version 2 is not used yet"),
        "{}",
        text(&o)
    );
    let out = ok(&[&"verify", &b1, &"--root", &dep.join("root/1.root.toml")]);
    assert!(out.contains("epoch       1"), "{out}");

    ok(&[
        &"attest",
        &r2_path,
        &"--key",
        &dep.join("keys/root-3.key"),
        &"--deployment",
        &dep,
    ]);
    let b2 = tmp.path().join("b2");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b2,
    ]);
    let out = ok(&[&"verify", &b2, &"--root", &dep.join("root/1.root.toml")]);
    assert!(out.contains("version 2 (updated from 1)"), "{out}");
    assert!(out.contains("epoch       2"), "{out}");

    // A key that is no root key cannot attest a root.
    let stray = tmp.path().join("stray");
    ok(&[&"node-key", &"--out", &stray]);
    let err = fails(
        4,
        &[
            &"attest",
            &r2_path,
            &"--key",
            &stray.join("localhost.key"),
            &"--deployment",
            &dep,
        ],
    );
    assert!(err.contains("is not a root key"), "{err}");
}

#[test]
fn rotating_root_and_timestamp_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let out = ok(&[
        &"root-next",
        &dep,
        &"--rotate",
        &"root",
        &"--rotate",
        &"timestamp",
    ]);
    assert!(
        out.contains("needs 2 of the current root keys and 2 of the new ones"),
        "{out}"
    );
    let r2_path = dep.join("root/2.root.toml");
    // Two old keys alone are not enough: the new keys must sign too.
    for k in ["root-1", "root-2"] {
        ok(&[
            &"attest",
            &r2_path,
            &"--key",
            &dep.join(format!("keys/{k}.key")),
            &"--deployment",
            &dep,
        ]);
    }
    let b1 = tmp.path().join("b1");
    let o = run(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b1,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("distinct root key(s) of its own"),
        "{}",
        text(&o)
    );
    for k in ["root-1-v2", "root-3-v2"] {
        ok(&[
            &"attest",
            &r2_path,
            &"--key",
            &dep.join(format!("keys/{k}.key")),
            &"--deployment",
            &dep,
        ]);
    }
    let b2 = tmp.path().join("b2");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &b2,
    ]);
    // The old timestamp key is no longer accepted; the new one is.
    let err = fails(
        4,
        &[
            &"timestamp",
            &b2,
            &"--key",
            &dep.join("keys/timestamp.key"),
            &"--deployment",
            &dep,
        ],
    );
    assert!(
        err.contains("is not a timestamp key of root version 2"),
        "{err}"
    );
    ok(&[
        &"timestamp",
        &b2,
        &"--key",
        &dep.join("keys/timestamp-v2.key"),
        &"--deployment",
        &dep,
    ]);
    let out = ok(&[&"verify", &b2, &"--root", &dep.join("root/1.root.toml")]);
    assert!(
        out.contains("version 2 (updated from 1)") && out.contains("timestamp   version"),
        "{out}"
    );
}

#[test]
fn refusals_and_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    // init refuses a non-empty directory.
    let err = fails(3, &[&"init", &dep]);
    assert!(err.contains("not empty"), "{err}");
    // A threshold above the key count.
    fails(
        3,
        &[
            &"init",
            &tmp.path().join("x"),
            &"--root-keys",
            &"1",
            &"--root-threshold",
            &"2",
        ],
    );
    // A malformed key id and a malformed duration are usage errors.
    fails(
        2,
        &[&"enroll", &dep, &"--member", &"alpha", &"--key-id", &"xyz"],
    );
    fails(
        2,
        &[
            &"sign",
            &example_tree(),
            &"--deployment",
            &dep,
            &"--out",
            &tmp.path().join("b"),
            &"--expires",
            &"soon",
        ],
    );
    // One key identifies one member.
    let id = key(40).key_id().to_string();
    ok(&[&"enroll", &dep, &"--member", &"beta", &"--key-id", &id]);
    let err = fails(
        3,
        &[&"enroll", &dep, &"--member", &"gamma", &"--key-id", &id],
    );
    assert!(err.contains("already enrolled for member beta"), "{err}");
    fails(3, &[&"revoke", &dep, &"--member", &"nobody"]);
    // A key file others can read is refused.
    use std::os::unix::fs::PermissionsExt;
    let policy = dep.join("keys/policy.key");
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(
        3,
        &[
            &"sign",
            &example_tree(),
            &"--deployment",
            &dep,
            &"--out",
            &tmp.path().join("b"),
        ],
    );
    assert!(err.contains("chmod 600"), "{err}");
    // Help teaches the flow and the exit codes.
    let help = ok(&[&"--help"]);
    assert!(
        help.contains("tenet-keys init deploy/") && help.contains("Exit codes:"),
        "{help}"
    );
    let sign_help = ok(&[&"sign", &"--help"]);
    assert!(
        sign_help.contains("--unsigned") && sign_help.contains("never signed"),
        "{sign_help}"
    );
}

#[test]
fn detached_signature_of_a_timestamp_by_hand() {
    // attest picks the context from the file's kind: a timestamp signed this way
    // verifies as a timestamp.
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let bundle = tmp.path().join("bundle");
    ok(&[
        &"sign",
        &example_tree(),
        &"--deployment",
        &dep,
        &"--out",
        &bundle,
    ]);
    ok(&[
        &"timestamp",
        &bundle,
        &"--key",
        &dep.join("keys/timestamp.key"),
    ]);
    let ts = bundle.join("timestamp.toml");
    let bytes = std::fs::read(&ts).unwrap();
    std::fs::remove_file(bundle.join("timestamp.toml.sig")).unwrap();
    ok(&[&"attest", &ts, &"--key", &dep.join("keys/timestamp.key")]);
    ok(&[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")]);
    // And a signature in another context does not.
    let other = sig(&[&key(1)], Document::Manifest, &bytes);
    write(&bundle.join("timestamp.toml.sig"), other.as_bytes());
    let err = fails(
        4,
        &[&"verify", &bundle, &"--root", &dep.join("root/1.root.toml")],
    );
    assert!(
        err.contains("timestamp is signed by 0 distinct timestamp key(s)"),
        "{err}"
    );
}

/// `--help` of the binary and of each command, compared with `tests/golden/help/*.txt`.
/// `UPDATE_GOLDEN=1 cargo test -p tenet-keys` rewrites them; review the diff.
#[test]
fn help_matches_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for cmd in [
        "",
        "init",
        "node-key",
        "enroll",
        "revoke",
        "admin-key",
        "admin-revoke",
        "sign",
        "root-next",
        "attest",
        "timestamp",
        "publish",
        "verify",
        "join-token",
        "fingerprint",
        "requests",
        "approve",
    ] {
        let mut args: Vec<&str> = Vec::new();
        if !cmd.is_empty() {
            args.push(cmd);
        }
        args.push("--help");
        let o = Command::new(env!("CARGO_BIN_EXE_tenet-keys"))
            .args(&args)
            .env("COLUMNS", "100")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let got = String::from_utf8(o.stdout).unwrap();
        let name = if cmd.is_empty() { "tenet-keys" } else { cmd };
        let path = golden.join(format!("{name}.txt"));
        if update {
            write(&path, got.as_bytes());
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != got {
            mismatches.push(format!("--- {}\n{want}\n+++ actual\n{got}", path.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "help text changed (UPDATE_GOLDEN=1 rewrites the golden files):\n{}",
        mismatches.join("\n")
    );
}

/// A secret key file owned by another user is refused, even with mode 0600: that user
/// could have put a key of their choosing there. The error names the file and its owner.
#[test]
fn finding_15_a_key_file_owned_by_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let policy = dep.join("keys/policy.key");
    let tree = example_tree();
    let (b1, b2) = (tmp.path().join("b1"), tmp.path().join("b2"));
    ok(&[&"sign", &tree, &"--deployment", &dep, &"--out", &b1]);

    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a `nobody` user")
        .uid;
    assert_ne!(nobody, nix::unistd::geteuid());
    nix::unistd::chown(&policy, Some(nobody), None).unwrap();
    assert_eq!(std::fs::metadata(&policy).unwrap().mode() & 0o777, 0o600);

    let err = fails(3, &[&"sign", &tree, &"--deployment", &dep, &"--out", &b2]);
    assert!(
        err.contains(&policy.display().to_string())
            && err.contains(&format!("owned by uid {nobody}")),
        "{err}"
    );
    assert!(!b2.exists(), "signed with a key another user owns");

    // The library refuses it the same way.
    match tenet_keys::SecretKey::read(&policy) {
        Err(tenet_keys::KeyError::Owner { path, owner, .. }) => {
            assert_eq!(path, policy);
            assert_eq!(owner, nobody.as_raw());
        }
        other => panic!("{other:?}"),
    }
}

/// A FIFO put where a key file belongs (by whoever can write the key's directory) is
/// refused as not a file at once; reading the key never waits for a writer.
#[test]
fn finding_15_a_fifo_at_a_key_path_is_refused_without_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let dep = deployment(tmp.path());
    let policy = dep.join("keys/policy.key");
    std::fs::remove_file(&policy).unwrap();
    nix::unistd::mkfifo(&policy, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = tmp.path().join("b1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenet-keys"))
        .args([
            "sign".as_ref(),
            example_tree().as_os_str(),
            "--deployment".as_ref(),
        ])
        .args([dep.as_os_str(), "--out".as_ref(), out.as_os_str()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It answers at once; the bound only keeps a hanging binary from hanging the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tenet-keys sign is still waiting on the FIFO after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains(&policy.display().to_string()), "{err}");
    assert!(!out.exists());

    // The library refuses it the same way.
    match tenet_keys::SecretKey::read(&policy) {
        Err(tenet_keys::KeyError::NotAFile { path }) => assert_eq!(path, policy),
        other => panic!("{other:?}"),
    }
}
