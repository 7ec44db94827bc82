//! `cargo run -p xtask -- gen-docs OUT_DIR`: writes the man pages (section 8, one per
//! command and subcommand) and the bash, zsh and fish completions of `tenet-agent`,
//! `tenet-policyd` and `tenet-keys`, from the same clap definitions the binaries
//! parse, so neither can drift from the command lines. `scripts/package.sh` runs it
//! before building the packages, which install OUT_DIR's files.

use std::path::PathBuf;
use std::process::ExitCode;

use xtask::{GenError, generate};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(task), Some(out), None) = (args.next(), args.next(), args.next()) else {
        return usage();
    };
    if task != "gen-docs" {
        return usage();
    }
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(GenError { path, source }) => {
            #[expect(clippy::print_stderr, reason = "a command-line tool's error")]
            {
                eprintln!("xtask: {}: {source}", path.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    #[expect(clippy::print_stderr, reason = "a command-line tool's usage")]
    {
        eprintln!("usage: xtask gen-docs OUT_DIR");
    }
    ExitCode::from(2)
}
