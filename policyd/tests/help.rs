//! `--help` of the binary and of each command, compared with `tests/golden/help/*.txt`.
//! `UPDATE_GOLDEN=1 cargo test -p tenet-policyd` rewrites them; review the diff.

use std::path::Path;
use std::process::Command;

#[test]
fn help_matches_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for cmd in [
        "", "serve", "promote", "demote", "status", "start", "stop", "watch", "validate", "report",
    ] {
        let mut args: Vec<&str> = Vec::new();
        if !cmd.is_empty() {
            args.push(cmd);
        }
        args.push("--help");
        #[expect(clippy::disallowed_methods, reason = "runs the binary under test")]
        let o = Command::new(crate::util::POLICYD)
            .args(&args)
            .env("COLUMNS", "100")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = String::from_utf8(o.stdout).unwrap();
        let name = if cmd.is_empty() { "tenet-policyd" } else { cmd };
        let path = golden.join(format!("{name}.txt"));
        if update {
            std::fs::create_dir_all(&golden).unwrap();
            #[expect(
                clippy::disallowed_methods,
                reason = "rewrites a golden file on request"
            )]
            std::fs::write(&path, got.as_bytes()).unwrap();
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
