//! `tenet-agent demo`: the shipped example applied to a throwaway sandbox, twice.
//!
//! Writes the embedded `dce-cluster` tree and a starting `/etc` (a services file
//! without kerberos5, an environment file with a stale `RPC_UNSUPPORTED_NETADDRS`)
//! into a new temporary directory, converges it as member `alpha`, converges it again
//! to show that nothing is left to do, and removes the sandbox unless asked to keep it.

use std::io;
use std::path::{Path, PathBuf};

use tenet_policies::examples::DCE_CLUSTER;

use crate::converge::{Diffs, Mode};
use crate::fsops::{Attrs, Batch, Root};
use crate::ops::apply::{ApplyError, ApplyOptions, apply};
use crate::report::{Reporter, Summary};

/// The facts the demo's member has: alpha, holding the DCE package's address.
pub const DEMO_FACTS: [&str; 2] = [
    "hostname=alpha.example.com",
    "addresses=9.3.240.1,9.3.240.66,9.3.240.2",
];

const SERVICES: &str = "\
# Network services, Internet style
ftp\t\t21/tcp
ssh\t\t22/tcp
domain\t\t53/udp
";

const ENVIRONMENT: &str = "\
PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"
LANG=C.UTF-8
RPC_UNSUPPORTED_NETADDRS=1.2.3.4
";

/// Where the demo ran and what each run reported.
#[derive(Debug)]
pub struct DemoRun {
    /// The sandbox root.
    pub root: PathBuf,
    /// The first run's summary.
    pub first: Summary,
    /// The second run's summary.
    pub second: Summary,
}

/// Sets up a sandbox in `dir` (which must be empty) and applies the example twice,
/// reporting each run to `reporter`; `between` is called between the two runs.
pub fn run(
    dir: &Path,
    reporter: &mut dyn Reporter,
    between: &mut dyn FnMut(),
) -> Result<DemoRun, ApplyError> {
    let tree = dir.join("policy");
    let root = dir.join("root");
    seed(dir, &tree, &root).map_err(|source| ApplyError::Root {
        path: dir.to_path_buf(),
        source,
    })?;
    let opts = ApplyOptions {
        tree,
        files: None,
        root: root.clone(),
        state_dir: None,
        mode: Mode::Apply,
        diffs: Diffs::Keep,
        facts: DEMO_FACTS.iter().map(|s| s.to_string()).collect(),
        lock_timeout: std::time::Duration::ZERO,
        rehash: false,
        serial: None,
    };
    let first = apply(&opts, reporter)?;
    between();
    let second = apply(&opts, reporter)?;
    Ok(DemoRun {
        root,
        first,
        second,
    })
}

fn seed(dir: &Path, tree: &Path, root: &Path) -> io::Result<()> {
    let sandbox = Root::new(dir)?;
    let mut batch = Batch::new(&sandbox, DCE_CLUSTER.len() + 2);
    for (rel, text) in DCE_CLUSTER {
        batch.write_file(0, &tree.join(rel), text.as_bytes(), Attrs::default())?;
    }
    batch.write_file(
        0,
        &root.join("etc/services"),
        SERVICES.as_bytes(),
        Attrs::default(),
    )?;
    batch.write_file(
        0,
        &root.join("etc/environment"),
        ENVIRONMENT.as_bytes(),
        Attrs::default(),
    )?;
    match batch.commit().pop() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}
