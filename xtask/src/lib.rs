//! Man pages and shell completions generated from the binaries' clap definitions.
//!
//! Layout under the output directory (the packages map it to the FHS paths):
//! `man/man8/NAME.8` for every command and subcommand (`tenet-agent-run.8`, ...),
//! `completions/bash/NAME`, `completions/zsh/_NAME`, `completions/fish/NAME.fish`.
#![expect(
    clippy::disallowed_methods,
    reason = "build outputs in a fresh directory, not files a member manages"
)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// The section every page is in: the three programs administer the system.
pub const SECTION: &str = "8";

/// A file or directory that could not be written.
#[derive(Debug)]
pub struct GenError {
    /// What was being written.
    pub path: PathBuf,
    /// Why it failed.
    pub source: io::Error,
}

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for GenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> GenError + '_ {
    move |source| GenError {
        path: path.to_path_buf(),
        source,
    }
}

/// The three programs' command lines, as the binaries parse them.
pub fn commands() -> [clap::Command; 3] {
    [
        tenet_agent::cli::Cli::command(),
        tenet_policyd::cli::Cli::command(),
        tenet_keys::cli::Cli::command(),
    ]
}

/// Writes every man page and completion script under `out`.
///
/// # Errors
/// A directory or file that cannot be created or written.
pub fn generate(out: &Path) -> Result<(), GenError> {
    let man = out.join("man").join(format!("man{SECTION}"));
    fs::create_dir_all(&man).map_err(at(&man))?;
    for cmd in commands() {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        pages(&cmd, &man)?;
        completions(&mut cmd, out)?;
    }
    Ok(())
}

/// The page of `cmd` (a built command: subcommands are named by clap's display
/// name, e.g. `tenet-agent-plan-show`), then its subcommands'.
fn pages(cmd: &clap::Command, dir: &Path) -> Result<(), GenError> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let path = dir.join(format!("{name}.{SECTION}"));
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .manual("tenet")
        .source(format!("tenet {}", env!("CARGO_PKG_VERSION")))
        .render(&mut text)
        .map_err(at(&path))?;
    fs::write(&path, text).map_err(at(&path))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, dir)?;
    }
    Ok(())
}

fn completions(cmd: &mut clap::Command, out: &Path) -> Result<(), GenError> {
    let name = cmd.get_name().to_owned();
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let dir = out.join("completions").join(shell.to_string());
        fs::create_dir_all(&dir).map_err(at(&dir))?;
        let path = dir.join(file);
        let mut text = Vec::new();
        clap_complete::generate(shell, cmd, name.clone(), &mut text);
        fs::write(&path, text).map_err(at(&path))?;
    }
    Ok(())
}
