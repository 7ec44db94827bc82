//! The only place that starts processes: commands, their guards, and nothing else.
//!
//! A command gets no stdin, its own process group (so a timeout kills everything
//! it started), the agent's environment plus `TENET_ROOT` and the promise's `env`,
//! and its working directory beneath the root. Output is kept as a bounded tail.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// How much of each output stream is kept.
const TAIL_BYTES: usize = 4096;

/// A process to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Program and arguments; the program is a host path or a name found on `PATH`.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Killed (with its process group) after this long.
    pub timeout: Duration,
    /// Exported as `TENET_ROOT`.
    pub root: PathBuf,
}

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// The last bytes of stdout.
    pub stdout: String,
    /// The last bytes of stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Finished {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// One line saying how it ended, with the stderr tail when there is one.
    pub fn describe(&self) -> String {
        let how = if self.timed_out {
            format!("timed out after {:.1?} and was killed", self.elapsed)
        } else if let Some(c) = self.code {
            format!("exited with status {c}")
        } else {
            format!("was killed by signal {}", self.signal.unwrap_or_default())
        };
        let err = self.stderr.trim();
        if err.is_empty() {
            how
        } else {
            format!("{how}: {}", last_line(err))
        }
    }
}

/// Runs `inv` to completion or timeout.
pub fn run(inv: &Invocation) -> io::Result<Finished> {
    run_with(inv, Output::Capture)
}

/// Runs `inv` to completion or timeout with stdout and stderr on `/dev/null`: for
/// a command that starts a daemon, which would otherwise inherit the pipes and
/// keep them open (so the run would wait on them for as long as it lives). The
/// returned outputs are empty.
pub fn run_detached(inv: &Invocation) -> io::Result<Finished> {
    run_with(inv, Output::Discard)
}

/// What becomes of a command's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Piped, and a bounded tail kept.
    Capture,
    /// To `/dev/null`.
    Discard,
}

fn run_with(inv: &Invocation, output: Output) -> io::Result<Finished> {
    let stdio = || match output {
        Output::Capture => Stdio::piped(),
        Output::Discard => Stdio::null(),
    };
    let Some((program, args)) = inv.argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty argument vector",
        ));
    };
    #[expect(
        clippy::disallowed_methods,
        reason = "exec is the one place that builds commands"
    )]
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&inv.env)
        .env("TENET_ROOT", &inv.root)
        .current_dir(&inv.cwd)
        .stdin(Stdio::null())
        .stdout(stdio())
        .stderr(stdio())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    let out = child.stdout.take().map(|s| thread::spawn(move || tail(s)));
    let err = child.stderr.take().map(|s| thread::spawn(move || tail(s)));
    let (status, timed_out) = match child.wait_timeout(inv.timeout)? {
        Some(s) => (s, false),
        None => {
            if let Ok(pgid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            (child.wait()?, true)
        }
    };
    let join =
        |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Finished {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: join(out),
        stderr: join(err),
        elapsed: start.elapsed(),
    })
}

/// Maps an absolute program path beneath the root; names are looked up on `PATH`.
pub fn program_path(root: &Path, program: &str) -> String {
    match program.strip_prefix('/') {
        Some(rel) if root != Path::new("/") => root.join(rel).to_string_lossy().into_owned(),
        _ => program.to_string(),
    }
}

fn tail(mut r: impl Read) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * TAIL_BYTES {
                    kept.drain(..kept.len() - TAIL_BYTES);
                }
            }
        }
    }
    if kept.len() > TAIL_BYTES {
        kept.drain(..kept.len() - TAIL_BYTES);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(argv: &[&str], timeout_ms: u64) -> Invocation {
        Invocation {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            cwd: PathBuf::from("/"),
            timeout: Duration::from_millis(timeout_ms),
            root: PathBuf::from("/tmp/r"),
        }
    }

    #[test]
    fn runs_with_env_and_captures_output() {
        let f = run(&inv(
            &[
                "sh",
                "-c",
                "echo $GREETING $TENET_ROOT; echo oops >&2; exit 3",
            ],
            10_000,
        ))
        .unwrap();
        assert_eq!(f.code, Some(3));
        assert_eq!(f.stdout, "hi /tmp/r\n");
        assert_eq!(f.describe(), "exited with status 3: oops");
        assert!(!f.success());
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let f = run(&inv(&["sh", "-c", "sleep 30 & sleep 30"], 200)).unwrap();
        assert!(f.timed_out);
        assert!(f.elapsed < Duration::from_secs(10), "{:?}", f.elapsed);
        assert!(f.describe().starts_with("timed out"));
    }

    #[test]
    fn a_detached_run_does_not_wait_for_the_daemon_it_starts() {
        let marker = format!("tenet-exec-test-{}", std::process::id());
        // The daemon holds whatever stdout it inherited for 30 s; with pipes the
        // run would wait for it, with /dev/null it ends when the shell does.
        let f = run_detached(&inv(
            &[
                "sh",
                "-c",
                &format!("sh -c 'sleep 30; : {marker}' & echo started"),
            ],
            20_000,
        ))
        .unwrap();
        assert!(f.success(), "{f:?}");
        assert!(!f.timed_out && f.elapsed < Duration::from_secs(10), "{f:?}");
        assert_eq!(f.stdout, "", "the output is discarded");
        // End the daemon this test started, with its process group (the sleep too).
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker)
                && let Ok(pgid) = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
            {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let e = run(&inv(&["/nonexistent/prog"], 1000)).unwrap_err();
        assert!(
            e.to_string().contains("cannot start /nonexistent/prog"),
            "{e}"
        );
    }

    #[test]
    fn absolute_programs_resolve_beneath_the_root() {
        assert_eq!(
            program_path(Path::new("/r"), "/usr/bin/start.dce"),
            "/r/usr/bin/start.dce"
        );
        assert_eq!(program_path(Path::new("/"), "/usr/bin/x"), "/usr/bin/x");
        assert_eq!(program_path(Path::new("/r"), "true"), "true");
    }
}
