//! The fleet benchmark's tool (`bench/fleet.sh`): N simulated members against one
//! `tenet-policyd` ([`tenet_tests::fleet`] says what each member does on the wire).
//!
//! `fleet setup DIR MEMBERS`: in DIR, the deployment `deploy/` with MEMBERS enrolled
//! node keys `nodes/mNNNNN.key`, policyd's key `srv/localhost.key`, and
//! `tree/cluster.toml` naming every member (add the rest of the policy tree, then sign).
//!
//! `fleet run DIR ADDR MEMBERS INTERVAL [--seed BUNDLE] [--pid PID] [--concurrency C]
//! [--warmup SECONDS] [--deadline SECONDS] -- PUBLISH...`: the members poll policyd's
//! serving socket ADDR every INTERVAL seconds, splayed; with `--seed`, each starts
//! holding that bundle (serial 1), else fetches it first. Once every member holds
//! serial 1 and the warm-up (default one interval) has passed, the command PUBLISH
//! runs (a `tenet-policyd promote` of serial 2); the run ends when every member holds
//! it, or `--deadline` (default INTERVAL + 120) seconds after. `--pid` names policyd's
//! process, for its CPU time and peak memory. Prints the report; exits 0 when every
//! member holds the new serial and no poll failed, 1 otherwise, 2 on a usage or setup
//! error.
#![expect(clippy::print_stdout, reason = "a benchmark tool prints its figures")]
#![expect(clippy::print_stderr, reason = "a benchmark tool prints its errors")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark tool runs the publish command it is given"
)]

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use tenet_tests::fleet::{self, Options};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: fleet setup DIR MEMBERS\n       fleet run DIR ADDR MEMBERS INTERVAL [--seed BUNDLE] [--pid PID] [--concurrency C] [--warmup SECONDS] [--deadline SECONDS] -- PUBLISH...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match main_with(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::from(2)
        }
    }
}

fn main_with(args: &[String]) -> Result<bool, Error> {
    match args.first().map(String::as_str) {
        Some("setup") => {
            let [_, dir, members] = args else {
                return Err(USAGE.into());
            };
            let keys = fleet::setup(&PathBuf::from(dir), members.parse()?)?;
            println!(
                "setup: {members} members enrolled, their keys made in {:.1} s",
                keys.as_secs_f64()
            );
            Ok(true)
        }
        Some("run") => run(&args[1..]),
        _ => Err(USAGE.into()),
    }
}

fn run(args: &[String]) -> Result<bool, Error> {
    let split = args.iter().position(|a| a == "--").ok_or(USAGE)?;
    let (ours, publish) = (&args[..split], &args[split + 1..]);
    let [dir, addr, members, interval, flags @ ..] = ours else {
        return Err(USAGE.into());
    };
    let (program, publish_args) = publish.split_first().ok_or(USAGE)?;
    let interval = Duration::from_secs_f64(interval.parse()?);
    let mut opts = Options {
        dir: PathBuf::from(dir),
        members: members.parse()?,
        server: addr.parse()?,
        interval,
        concurrency: 4096,
        first_serial: 1,
        seed: None,
        server_pid: None,
        warmup: interval,
        deadline: interval + Duration::from_secs(120),
    };
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let value = flags.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--seed" => opts.seed = Some(PathBuf::from(value)),
            "--pid" => opts.server_pid = Some(value.parse()?),
            "--concurrency" => opts.concurrency = value.parse()?,
            "--warmup" => opts.warmup = Duration::from_secs_f64(value.parse()?),
            "--deadline" => opts.deadline = Duration::from_secs_f64(value.parse()?),
            _ => return Err(USAGE.into()),
        }
    }
    let (program, publish_args) = (program.clone(), publish_args.to_vec());
    let publish = Box::new(move || {
        let out = Command::new(&program)
            .args(&publish_args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    });
    let report = fleet::run(&opts, publish)?;
    println!("{report}");
    Ok(report.is_clean())
}
