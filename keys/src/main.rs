//! `tenet-keys`: parse the command line, read the clock, run the library, exit with its code.

use std::io;
use std::process;
use std::time::SystemTime;

use clap::Parser;
use tenet_keys::cli::{Cli, run};
use tenet_keys::time::Time;

fn main() {
    let cli = Cli::parse();
    let now = Time::from_system(SystemTime::now());
    let code = run(cli, now, &mut io::stdout().lock(), &mut io::stderr().lock());
    process::exit(i32::from(code as u8));
}
