//! The `tenet-keys` command line: clap types, exit codes, and each command's output.
//!
//! Commands write to the writers they are given (stdout and stderr in the binary), so
//! the library itself never prints, and the clock is read only by the binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::deployment::{
    self, AdminChange, Deployment, Enrollment, InitOptions, NextRootOptions, Rotate,
};
use crate::error::{KeyError, PublishError};
use crate::id::KeyId;
use crate::key::SecretKey;
use crate::publish::{self, SignOptions, Signing};
use crate::sig::Added;
use crate::time::{Time, parse_duration};
use crate::verify::{Clock, TrustState, TrustedRoot, verify_bundle};
use crate::{bundle, error_chain};

mod join;
mod members;

/// Exit codes; those shared with other tenet binaries keep the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done.
    Success = 0,
    /// `members`: the HA engine's membership differs from the policy (a proposal was made).
    Differs = 1,
    /// Usage error.
    Usage = 2,
    /// An invalid policy tree or deployment configuration; nothing was signed.
    Invalid = 3,
    /// Trust refused: a signature, threshold, serial, expiry, hash or path check failed.
    TrustRefused = 4,
    /// `members`: the HA engine's membership could not be read.
    Engine = 5,
    /// A file could not be read or written.
    Io = 7,
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  2  usage error
  3  invalid policy tree or deployment configuration (diagnostics printed); nothing signed
  4  trust refused: bad or missing signature, unknown signer, rollback, expiry, wrong hash
  7  a file could not be read or written";

const ABOUT: &str = "\
Keys, signatures and bundles for tenet.

A deployment has offline root keys (k of n) that sign root.toml, a policy key that
signs each manifest (the list of every file of a policy tree, by hash), and an
online timestamp key that the policy server uses to say, for a few hours, which
manifest is current. Members trust only what verifies against their root.

A typical first run:
  tenet-keys init deploy/                       # keys + root version 1
  tenet-keys node-key --out node/               # on each member: its identity
  tenet-keys enroll deploy/ --member alpha --key-id <id printed above>
  tenet-keys sign tree/ --deployment deploy/ --out bundle/
  tenet-keys timestamp bundle/ --key deploy/keys/timestamp.key
  tenet-keys verify bundle/ --root deploy/root/1.root.toml

Or let a member join, instead of node-key and enroll (docs/install.md):
  tenet-keys join-token deploy/ --member beta   # one-time token; with an admin in the root
  tenet-agent join MASTER --token T --trusted-root 1.root.toml --expect-fingerprint FP
  tenet-keys approve deploy/ beta --join-dir JOIN_DIR   # FP: tenet-keys fingerprint

Administrators (keys that sign run requests for `tenet-agent push`):
  tenet-keys admin-key deploy/ alice --member '*' --class 'maint_*'
  tenet-keys root-next deploy/ && tenet-keys attest deploy/root/2.root.toml --key ...

Rotating keys or extending the root's expiry:
  tenet-keys root-next deploy/ --rotate timestamp
  tenet-keys attest deploy/root/2.root.toml --key deploy/keys/root-1.key --deployment deploy/
  tenet-keys attest deploy/root/2.root.toml --key deploy/keys/root-2.key --deployment deploy/

Then move deploy/keys/root-*.key (and, ideally, policy.key) offline.";

/// tenet-keys: keys, signed roots, manifests and timestamps, bundles.
#[derive(Debug, Parser)]
#[command(
    name = "tenet-keys",
    version,
    about = "Keys, signatures and bundles for tenet",
    long_about = ABOUT,
    after_help = EXIT_CODES,
    max_term_width = 100
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Print what the command did as one JSON line ({"schema":"tenet.keys.COMMAND/1",...})
    /// instead of text; warnings and errors stay on stderr.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where a command's report goes: text for a person, or (`--json`) one JSON line.
struct Out<'a> {
    out: &'a mut dyn Write,
    json: bool,
    sink: std::io::Sink,
}

impl Out<'_> {
    /// Where the text goes: nowhere with `--json`.
    fn text(&mut self) -> &mut dyn Write {
        if self.json { &mut self.sink } else { self.out }
    }

    /// Writes `v` with `type` `kind` as a `tenet.keys.KIND/1` line, with `--json` only.
    fn json(&mut self, kind: &str, mut v: serde_json::Value) {
        if !self.json {
            return;
        }
        if let serde_json::Value::Object(map) = &mut v {
            map.insert("type".to_string(), kind.into());
        }
        let _ = crate::jsonl::write_line(self.out, "keys", &v);
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new deployment: keys, root version 1, and the deployment's state.
    ///
    /// Writes DIR/keys/{root-1..N,policy,timestamp,server-tls}.key (mode 0600),
    /// DIR/root/1.root.toml signed by every root key, DIR/deployment.toml (the
    /// deployment id and the last serial) and DIR/inventory.toml. DIR must be absent or
    /// empty. Afterwards, move the root keys to offline media, one per custodian.
    #[command(after_help = EXIT_CODES)]
    Init(InitArgs),
    /// Make a member identity key (DIR/localhost.key, mode 0600) and print its key id.
    ///
    /// The key id (SHA-256 of the public key's SubjectPublicKeyInfo) is what
    /// `enroll --key-id` takes; the private key never leaves the member.
    #[command(after_help = EXIT_CODES)]
    NodeKey {
        /// The directory to write the key into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Enroll a member's key id; the next signed manifest lists it in the inventory.
    #[command(after_help = EXIT_CODES)]
    Enroll {
        /// The deployment directory.
        dir: PathBuf,
        /// The member's name, as in the cluster config.
        #[arg(long)]
        member: String,
        /// The member's key id (64 hex characters; a `sha256:` prefix is accepted).
        #[arg(long = "key-id", value_parser = parse_key_id)]
        key_id: KeyId,
    },
    /// Remove a member's key id; the next signed manifest no longer lists it.
    #[command(after_help = EXIT_CODES)]
    Revoke {
        /// The deployment directory.
        dir: PathBuf,
        /// The member's name.
        #[arg(long)]
        member: String,
    },
    /// Validate a policy tree and sign it into a bundle.
    ///
    /// The tree is validated first; an invalid tree is never signed (every problem is
    /// printed, exit 3). The bundle holds every file of the tree by hash
    /// (blobs/sha256/), the manifest (paths, hashes, sizes, and the enrolled members of
    /// the cluster with their classes), its signature and the root history. The serial
    /// is recorded in the deployment; it only ever increases.
    #[command(after_help = EXIT_CODES)]
    Sign(SignArgs),
    /// Make an administrator's key, or change its scope, for the next root.
    ///
    /// An administrator signs run requests (`tenet-agent push`): "converge now", as a
    /// dry run or not, with classes set for that run. Its scope says which members it may
    /// trigger (names, or '*') and which classes it may set (names, 'prefix*', or '*';
    /// none by default). A new administrator gets DIR/keys/admin-NAME.key (mode 0600;
    /// hand it to the operator); an existing one keeps its key and gets the new scope.
    /// Everything is recorded in DIR/admins.toml and takes effect with the next root:
    /// run `root-next`, then `attest` it with the root keys.
    #[command(after_help = EXIT_CODES)]
    AdminKey {
        /// The deployment directory.
        dir: PathBuf,
        /// The administrator's name.
        name: String,
        /// A member the administrator may trigger, or '*' for all (repeatable).
        #[arg(long = "member", value_name = "MEMBER", default_values_t = ["*".to_string()])]
        members: Vec<String>,
        /// A class the administrator may set: a name, 'prefix*' or '*' (repeatable).
        #[arg(long = "class", value_name = "CLASS")]
        classes: Vec<String>,
    },
    /// Remove an administrator; the next root (`root-next`) no longer lists its key.
    #[command(after_help = EXIT_CODES)]
    AdminRevoke {
        /// The deployment directory.
        dir: PathBuf,
        /// The administrator's name.
        name: String,
    },
    /// Prepare the next root version (unsigned): new expiry, rotated keys, dropped pins.
    ///
    /// Writes DIR/root/NEXT.root.toml from the latest verified root (NEXT = its version + 1).
    /// New keys go to DIR/keys/ROLE-vNEXT.key. Rotating the policy key also bumps the policy epoch
    /// (use it after a policy key leak). Then sign the new root with `attest`, once per
    /// root key: it needs a threshold of the old root keys and of the new ones. Until it
    /// is fully signed, `sign` keeps using the previous root.
    #[command(after_help = EXIT_CODES)]
    RootNext(RootNextArgs),
    /// Add one signature to FILE.sig (a root, manifest or timestamp, told by its kind).
    ///
    /// For a root update, run it once per root key: the new root needs a threshold of
    /// the old root's keys and of its own. With --deployment, a key not listed for the
    /// document's role is refused.
    #[command(after_help = EXIT_CODES)]
    Attest {
        /// The document to sign (its exact bytes are signed).
        file: PathBuf,
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// Check the key against this deployment's latest root.
        #[arg(long)]
        deployment: Option<PathBuf>,
    },
    /// Write BUNDLE/timestamp.toml (+ .sig) naming the bundle's manifest.
    ///
    /// The policy server does this with its online key every TTL/2; members refuse an
    /// expired timestamp, which bounds how long a stale server can hide a newer manifest.
    #[command(after_help = EXIT_CODES)]
    Timestamp {
        /// The bundle directory.
        bundle: PathBuf,
        /// The timestamp key file.
        #[arg(long)]
        key: PathBuf,
        /// How long the timestamp is valid.
        #[arg(long, default_value = "6h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Check the key against this deployment's latest root.
        #[arg(long)]
        deployment: Option<PathBuf>,
    },
    /// Make a one-time join token for a new member (hand it to the member's operator).
    ///
    /// The member runs `tenet-agent join MASTER --token TOKEN --trusted-root ROOT
    /// --expect-fingerprint FP` (FP: `tenet-keys fingerprint ROOT`); the master's policyd
    /// (`[serve] join_dir`) checks the token and stores the request; `tenet-keys approve`
    /// enrols it. The token is signed by an administrator's key (--key; by default the
    /// deployment's only one) whose scope must cover the member and the classes, and
    /// which the root the master trusts lists. The member must also be in the cluster
    /// config of the next signed tree.
    #[command(after_help = EXIT_CODES)]
    JoinToken(JoinTokenArgs),
    /// Print a trusted root file's fingerprint (SHA-256 of its bytes), for
    /// `tenet-agent join --expect-fingerprint`.
    ///
    /// The root's own signatures are checked first (a root signed by too few of its
    /// root keys has no fingerprint to give).
    #[command(after_help = EXIT_CODES)]
    Fingerprint {
        /// The root file (its .sig beside it), e.g. DEPLOYMENT/root/1.root.toml.
        root: PathBuf,
    },
    /// List the join requests the master stored and that wait for approval.
    #[command(after_help = EXIT_CODES)]
    Requests {
        /// The deployment directory.
        dir: PathBuf,
        /// The master's join directory (`[serve] join_dir` of its policyd.toml).
        #[arg(long = "join-dir")]
        join_dir: PathBuf,
    },
    /// Enrol a member that asked to join, exactly as `enroll` does.
    ///
    /// The request's token is verified again against this deployment's root (signed by
    /// an admin key in scope, approved once, not issued before the member's last
    /// `revoke`); the key id is the one the member proved to the master. With --auto,
    /// every request whose token was made with `join-token --auto` is approved. The
    /// approved request is removed from the join directory; the next signed manifest
    /// carries the member.
    #[command(after_help = EXIT_CODES)]
    Approve {
        /// The deployment directory.
        dir: PathBuf,
        /// The member to approve.
        #[arg(required_unless_present = "auto", conflicts_with = "auto")]
        member: Option<String>,
        /// Approve every request made with an --auto token.
        #[arg(long)]
        auto: bool,
        /// The master's join directory (`[serve] join_dir` of its policyd.toml).
        #[arg(long = "join-dir")]
        join_dir: PathBuf,
    },
    /// Lay out a bundle in DIR for a static mirror, with a fresh timestamp.
    ///
    /// DIR is the bundle's own layout (root/, manifest.toml, blobs/sha256/) with
    /// timestamp.toml signed now by the timestamp key; any HTTPS server can serve it to
    /// members that list it under `mirrors` in agent.toml. Blobs are hashed as they are
    /// copied, and the timestamp is written last. Run it again within the timestamp's
    /// lifetime (every TTL/2) to keep the mirror fresh. A bundle older than the one DIR
    /// holds is refused: a mirror never goes backwards. See docs/mirrors.md.
    #[command(after_help = EXIT_CODES)]
    Publish {
        /// The bundle directory (as `sign` wrote it).
        bundle: PathBuf,
        /// The mirror's directory (created if missing).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The timestamp key file.
        #[arg(long)]
        key: PathBuf,
        /// How long the timestamp is valid.
        #[arg(long, default_value = "6h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Check the key against this deployment's latest root.
        #[arg(long)]
        deployment: Option<PathBuf>,
    },
    /// Verify a bundle as a member would, and print what it holds.
    ///
    /// Walks the root updates in the bundle from the trusted root, then checks the
    /// timestamp (if any), the manifest (signatures, deployment, epoch, expiry, paths)
    /// and every blob (size, then hash). Any failure prints the specific reason, exit 4.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Compare the HA engine's nodes with the policy's cluster members and the inventory.
    ///
    /// Reads the configured nodes from the engine (pacemaker: `cibadmin --query --scope
    /// nodes`; serviceguard: `cmviewcl -f line -l node`; powerha: `cllsnode`), and the
    /// cluster config from a policy tree (--policy, with --deployment for the
    /// inventory) or from a signed bundle (--bundle, verified against --root; its
    /// manifest is the inventory). A node that is no member is proposed as a new
    /// `[[member]]` (and in the policy server's package); a member in some package that
    /// is no node is proposed for removal (members in no package are clients and are
    /// kept). With --out DIR the proposed file and its diff are written there (and
    /// removed when nothing differs). It prints what differs and the exact commands to
    /// review, revoke, issue join tokens and sign; it holds and uses no key. The HA
    /// adapters call it when membership changes (docs/ha.md).
    #[command(after_help = MEMBERS_EXIT_CODES)]
    Members(MembersArgs),
}

const MEMBERS_EXIT_CODES: &str = "\
Exit codes:
  0  the policy's members and the inventory follow the engine; nothing to sign
  1  they differ: what to do is printed (and the proposal written with --out)
  2  usage error
  3  no [cluster] in the policy, or it is not valid TOML
  4  the bundle did not verify
  5  the engine's membership could not be read (its command failed or named no node)
  7  a file could not be read or written";

/// Options of `members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// The HA engine whose configured nodes are read.
    #[arg(long, value_enum)]
    pub from: crate::members::Engine,
    /// The policy tree (on the administrator's host).
    #[arg(
        long,
        value_name = "TREE",
        conflicts_with = "bundle",
        required_unless_present = "bundle"
    )]
    pub policy: Option<PathBuf>,
    /// The deployment whose inventory says who is enrolled (with --policy).
    #[arg(long, requires = "policy")]
    pub deployment: Option<PathBuf>,
    /// A signed bundle (on a cluster node, the one the policy server serves).
    #[arg(long, value_name = "DIR", requires = "root")]
    pub bundle: Option<PathBuf>,
    /// The trusted root file for --bundle (its .sig beside it).
    #[arg(long, value_name = "FILE", requires = "bundle")]
    pub root: Option<PathBuf>,
    /// Write the proposed cluster config and its diff into DIR when they differ.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The policy tree's path on the administrator's host, for the printed commands
    /// [default: --policy, else TREE].
    #[arg(long, value_name = "PATH")]
    pub admin_tree: Option<PathBuf>,
    /// The deployment's path on the administrator's host, for the printed commands
    /// [default: --deployment, else DEPLOYMENT].
    #[arg(long, value_name = "PATH")]
    pub admin_deployment: Option<PathBuf>,
}

/// Options of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The new deployment directory (absent or empty).
    pub dir: PathBuf,
    /// Root keys to make (n). 3 with a threshold of 2 survives one lost or stolen key.
    #[arg(long, default_value_t = 3)]
    pub root_keys: u32,
    /// Root signatures a root update needs (k); 1 of 1 is for labs only.
    #[arg(long, default_value_t = 2)]
    pub root_threshold: u32,
    /// How long root version 1 is valid (e.g. 365d); a root update extends it.
    #[arg(long, default_value = "365d", value_parser = parse_ttl)]
    pub expires: Duration,
}

/// Options of `join-token`.
#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// The deployment directory.
    pub dir: PathBuf,
    /// The member name the token enrols.
    #[arg(long)]
    pub member: String,
    /// Classes for the member, comma-separated (each within the administrator's scope).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// How long the token may be presented (at most 30d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub expires: Duration,
    /// Let `tenet-keys approve --auto` approve the request with the others.
    #[arg(long)]
    pub auto: bool,
    /// The administrator's key [default: the deployment's only keys/admin-NAME.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
}

/// A key `root-next` can replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RotateArg {
    /// Every root key (same count and threshold).
    Root,
    /// The policy key (and bump the policy epoch).
    Policy,
    /// The timestamp key.
    Timestamp,
    /// Add a new policy server TLS key's pin beside the current one.
    ServerTls,
}

/// Options of `root-next`.
#[derive(Debug, Args)]
pub struct RootNextArgs {
    /// The deployment directory.
    pub dir: PathBuf,
    /// How long the new root is valid.
    #[arg(long, default_value = "365d", value_parser = parse_ttl)]
    pub expires: Duration,
    /// Keys to replace (repeatable).
    #[arg(long, value_enum)]
    pub rotate: Vec<RotateArg>,
    /// Raise the policy epoch.
    #[arg(long)]
    pub bump_epoch: bool,
    /// A server TLS pin to remove (repeatable), once every member trusts its successor.
    #[arg(long = "drop-pin", value_parser = parse_key_id)]
    pub drop_pins: Vec<KeyId>,
}

/// Options of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The policy tree.
    pub tree: PathBuf,
    /// The deployment directory (made by init).
    #[arg(long)]
    pub deployment: PathBuf,
    /// The bundle directory to write (absent or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// The serial (default: the last one + 1); a serial not greater than the last is refused.
    #[arg(long)]
    pub serial: Option<u64>,
    /// How long the manifest is valid: the hard bound on a frozen policy server.
    #[arg(long, default_value = "14d", value_parser = parse_ttl)]
    pub expires: Duration,
    /// The policy key (default: DEPLOYMENT/keys/policy.key).
    #[arg(long, conflicts_with = "unsigned")]
    pub key: Option<PathBuf>,
    /// Write the bundle without manifest.toml.sig, to sign offline with `attest`.
    #[arg(long)]
    pub unsigned: bool,
}

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The trusted root file (its .sig must be beside it), e.g. DEPLOYMENT/root/1.root.toml.
    #[arg(long)]
    pub root: PathBuf,
    /// Check as of this time (RFC 3339 UTC) instead of now.
    #[arg(long, value_parser = parse_time)]
    pub now: Option<Time>,
    /// How far in the future a manifest's creation time may be.
    #[arg(long, default_value = "15m", value_parser = parse_ttl)]
    pub max_skew: Duration,
}

/// Runs one command. `now` is the clock reading of the caller; output goes to `out`,
/// warnings and errors to `err`.
pub fn run(cli: Cli, now: Time, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let out = &mut Out {
        out,
        json: cli.json,
        sink: std::io::sink(),
    };
    let result = match cli.command {
        Command::Init(a) => init(&a, now, out),
        Command::NodeKey { out: dir } => node_key(&dir, out),
        Command::Enroll {
            dir,
            member,
            key_id,
        } => enroll(&dir, &member, key_id, out),
        Command::Revoke { dir, member } => revoke(&dir, &member, now, out),
        Command::AdminKey {
            dir,
            name,
            members,
            classes,
        } => admin_key(&dir, &name, members, classes, out),
        Command::AdminRevoke { dir, name } => admin_revoke(&dir, &name, out),
        Command::Sign(a) => sign(&a, now, out, err),
        Command::RootNext(a) => root_next(&a, now, out),
        Command::Attest {
            file,
            key,
            deployment,
        } => attest(&file, &key, deployment.as_deref(), out),
        Command::Timestamp {
            bundle,
            key,
            ttl,
            deployment,
        } => timestamp(&bundle, &key, ttl, deployment.as_deref(), now, out),
        Command::Publish {
            bundle,
            to,
            key,
            ttl,
            deployment,
        } => publish_mirror(&bundle, &to, &key, ttl, deployment.as_deref(), now, out),
        Command::Verify(a) => verify(&a, now, out),
        Command::Members(a) => match members::members(&a, now, out) {
            Ok(members::Outcome::InSync) => Ok(()),
            Ok(members::Outcome::Differs) => return ExitCode::Differs,
            Err(e) => Err(e),
        },
        Command::JoinToken(a) => join::join_token(&a, now, out),
        Command::Fingerprint { root } => join::fingerprint(&root, out),
        Command::Requests { dir, join_dir } => join::requests(&dir, &join_dir, out),
        Command::Approve {
            dir,
            member,
            auto,
            join_dir,
        } => join::approve(&dir, member.as_deref(), auto, &join_dir, out),
    };
    match result {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            if let PublishError::InvalidPolicy { diagnostics, .. } = &e {
                let _ = write!(err, "{diagnostics}");
            }
            let _ = writeln!(err, "error: {}", error_chain(&e));
            exit_code(&e)
        }
    }
}

/// The exit code for an error.
pub fn exit_code(e: &PublishError) -> ExitCode {
    match e {
        PublishError::Verify(_) | PublishError::KeyNotInRole { .. } => ExitCode::TrustRefused,
        PublishError::Read { .. } | PublishError::Write { .. } | PublishError::Walk { .. } => {
            ExitCode::Io
        }
        PublishError::Render { .. } => ExitCode::Io,
        PublishError::Join(e) if e.is_trust() => ExitCode::TrustRefused,
        PublishError::Members(
            crate::error::MembersError::Engine { .. } | crate::error::MembersError::NoNodes { .. },
        ) => ExitCode::Engine,
        PublishError::Join(crate::join::JoinError::Io { .. }) => ExitCode::Io,
        PublishError::Key(
            KeyError::Read { .. } | KeyError::Write { .. } | KeyError::Random { .. },
        ) => ExitCode::Io,
        _ => ExitCode::Invalid,
    }
}

fn init(a: &InitArgs, now: Time, out: &mut Out<'_>) -> Result<(), PublishError> {
    let report = deployment::init(
        &a.dir,
        &InitOptions {
            root_keys: a.root_keys,
            root_threshold: a.root_threshold,
            expires_in: a.expires,
            now,
        },
    )?;
    let _ = writeln!(
        out.text(),
        "deployment {} created in {}",
        report.deployment,
        a.dir.display()
    );
    for (name, path, id) in &report.keys {
        let _ = writeln!(out.text(), "  {name:<12} {id}  {}", path.display());
    }
    out.json(
        "init",
        serde_json::json!({
            "deployment": report.deployment.to_string(),
            "dir": a.dir.display().to_string(),
            "keys": report.keys.iter().map(|(name, path, id)| serde_json::json!({
                "name": name, "keyid": id.to_string(), "path": path.display().to_string(),
            })).collect::<Vec<_>>(),
            "root": report.root.display().to_string(),
            "root_sha256": report.root_sha256.to_string(),
            "root_threshold": a.root_threshold,
        }),
    );
    let _ = writeln!(out.text(), "root version 1: {}", report.root.display());
    let _ = writeln!(out.text(), "root sha256:    {}", report.root_sha256);
    let _ = writeln!(
        out.text(),
        "fingerprint:    {} (members check it: tenet-agent join --expect-fingerprint; again later: tenet-keys fingerprint {})",
        report.root_sha256,
        report.root.display()
    );
    let _ = writeln!(
        out.text(),
        "next: move {}/keys/root-*.key offline (a root update needs {} of them)",
        a.dir.display(),
        a.root_threshold
    );
    Ok(())
}

fn node_key(dir: &Path, out: &mut Out<'_>) -> Result<(), PublishError> {
    let (path, id) = deployment::node_key(dir)?;
    out.json(
        "node_key",
        serde_json::json!({"keyid": id.to_string(), "path": path.display().to_string()}),
    );
    let _ = writeln!(out.text(), "{id}");
    let _ = writeln!(
        out.text(),
        "# key written to {}; enroll it with: tenet-keys enroll DEPLOYMENT --member NAME --key-id {id}",
        path.display()
    );
    Ok(())
}

fn enroll(dir: &Path, member: &str, keyid: KeyId, out: &mut Out<'_>) -> Result<(), PublishError> {
    let d = Deployment::open(dir)?;
    let change = d.enroll(member, keyid)?;
    out.json(
        "enroll",
        serde_json::json!({
            "member": member,
            "keyid": keyid.to_string(),
            "change": match &change {
                Enrollment::New => "new",
                Enrollment::Replaced(_) => "replaced",
                Enrollment::Unchanged => "unchanged",
            },
            "replaced_keyid": match &change {
                Enrollment::Replaced(old) => Some(old.to_string()),
                _ => None,
            },
        }),
    );
    let line = match change {
        Enrollment::New => format!("enrolled member {member} with key {keyid}"),
        Enrollment::Replaced(old) => {
            format!("member {member}: key {old} replaced by {keyid}")
        }
        Enrollment::Unchanged => format!("member {member} already has key {keyid}"),
    };
    let _ = writeln!(out.text(), "{line}; the next signed manifest carries it");
    Ok(())
}

fn revoke(dir: &Path, member: &str, now: Time, out: &mut Out<'_>) -> Result<(), PublishError> {
    let d = Deployment::open(dir)?;
    let old = d.revoke(member)?;
    // Join tokens for this name issued until now can no longer be approved.
    crate::join::Joins::open(dir)?.revoked(member, now)?;
    out.json(
        "revoke",
        serde_json::json!({"member": member, "keyid": old.to_string()}),
    );
    let _ = writeln!(
        out.text(),
        "revoked key {old} of member {member}; the next signed manifest leaves it out"
    );
    Ok(())
}

fn admin_key(
    dir: &Path,
    name: &str,
    members: Vec<String>,
    classes: Vec<String>,
    out: &mut Out<'_>,
) -> Result<(), PublishError> {
    let d = Deployment::open(dir)?;
    let (admin, change) = d.add_admin(name, members, classes)?;
    out.json(
        "admin_key",
        serde_json::json!({
            "name": name,
            "keyid": admin.keyid.to_string(),
            "key": match &change {
                AdminChange::NewKey(path) => Some(path.display().to_string()),
                AdminChange::ScopeReplaced => None,
            },
            "members": admin.members,
            "classes": admin.classes,
        }),
    );
    let classes = if admin.classes.is_empty() {
        "none".to_string()
    } else {
        admin.classes.join(", ")
    };
    match change {
        AdminChange::NewKey(path) => {
            let _ = writeln!(
                out.text(),
                "administrator {name}: key {} ({})",
                admin.keyid,
                path.display()
            );
        }
        AdminChange::ScopeReplaced => {
            let _ = writeln!(
                out.text(),
                "administrator {name}: key {} kept, scope replaced",
                admin.keyid
            );
        }
    }
    let _ = writeln!(
        out.text(),
        "  may trigger: {}
  may set classes: {classes}",
        admin.members.join(", ")
    );
    let _ = writeln!(
        out.text(),
        "next: tenet-keys root-next {} and attest it; members honour the new root after their next run",
        dir.display()
    );
    Ok(())
}

fn admin_revoke(dir: &Path, name: &str, out: &mut Out<'_>) -> Result<(), PublishError> {
    let d = Deployment::open(dir)?;
    let keyid = d.remove_admin(name)?;
    out.json(
        "admin_revoke",
        serde_json::json!({"name": name, "keyid": keyid.to_string()}),
    );
    let _ = writeln!(
        out.text(),
        "administrator {name} (key {keyid}) removed; the next root leaves it out: tenet-keys root-next {}",
        dir.display()
    );
    Ok(())
}

fn sign(
    a: &SignArgs,
    now: Time,
    out: &mut Out<'_>,
    err: &mut dyn Write,
) -> Result<(), PublishError> {
    let mut d = Deployment::open(&a.deployment)?;
    let signing = if a.unsigned {
        Signing::Unsigned
    } else {
        Signing::WithKey(a.key.clone().unwrap_or_else(|| d.policy_key_path()))
    };
    let report = publish::sign(
        &mut d,
        &SignOptions {
            tree: a.tree.clone(),
            out: a.out.clone(),
            serial: a.serial,
            expires_in: a.expires,
            now,
            signing,
        },
    )?;
    for w in &report.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    let m = &report.manifest;
    out.json(
        "sign",
        serde_json::json!({
            "bundle": report.out.display().to_string(),
            "serial": m.serial,
            "epoch": m.epoch,
            "files": m.files.len(),
            "members": m.members.len(),
            "expires": m.expires.to_string(),
            "manifest_sha256": report.manifest_sha256.to_string(),
            "signed_by": report.signed_by.map(|k| k.to_string()),
        }),
    );
    let _ = writeln!(
        out.text(),
        "bundle {}: serial {}, epoch {}, {} files, {} members, expires {}",
        report.out.display(),
        m.serial,
        m.epoch,
        m.files.len(),
        m.members.len(),
        m.expires
    );
    let _ = writeln!(out.text(), "manifest sha256 {}", report.manifest_sha256);
    match report.signed_by {
        Some(k) => {
            let _ = writeln!(out.text(), "signed by policy key {k}");
        }
        None => {
            let _ = writeln!(
                out.text(),
                "unsigned: sign it with tenet-keys attest {} --key POLICY_KEY",
                report.out.join(bundle::MANIFEST).display()
            );
        }
    }
    Ok(())
}

fn root_next(a: &RootNextArgs, now: Time, out: &mut Out<'_>) -> Result<(), PublishError> {
    let d = Deployment::open(&a.dir)?;
    let rotate = a
        .rotate
        .iter()
        .map(|r| match r {
            RotateArg::Root => Rotate::Root,
            RotateArg::Policy => Rotate::Policy,
            RotateArg::Timestamp => Rotate::Timestamp,
            RotateArg::ServerTls => Rotate::ServerTls,
        })
        .collect();
    let r = deployment::next_root(
        &d,
        &NextRootOptions {
            expires_in: a.expires,
            now,
            rotate,
            bump_epoch: a.bump_epoch,
            drop_pins: a.drop_pins.clone(),
        },
    )?;
    out.json(
        "root_next",
        serde_json::json!({
            "version": r.version,
            "path": r.path.display().to_string(),
            "keys": r.keys.iter().map(|(name, path, id)| serde_json::json!({
                "name": name, "keyid": id.to_string(), "path": path.display().to_string(),
            })).collect::<Vec<_>>(),
            "old_threshold": r.old_threshold,
            "new_threshold": r.new_threshold,
            "root_keys_changed": r.root_keys_changed,
        }),
    );
    let _ = writeln!(
        out.text(),
        "root version {} written (unsigned): {}",
        r.version,
        r.path.display()
    );
    for (name, path, id) in &r.keys {
        let _ = writeln!(out.text(), "  new key {name:<16} {id}  {}", path.display());
    }
    let needs = if r.root_keys_changed {
        format!(
            "{} of the current root keys and {} of the new ones",
            r.old_threshold, r.new_threshold
        )
    } else {
        format!("{} root keys", r.old_threshold.max(r.new_threshold))
    };
    let _ = writeln!(
        out.text(),
        "sign it with: tenet-keys attest {} --key ROOT_KEY --deployment {} (needs {needs})",
        r.path.display(),
        a.dir.display()
    );
    Ok(())
}

fn attest(
    file: &Path,
    key: &Path,
    deployment: Option<&Path>,
    out: &mut Out<'_>,
) -> Result<(), PublishError> {
    let key = SecretKey::read(key)?;
    let root = match deployment {
        Some(dir) => Some(
            Deployment::open(dir)?
                .root_history()?
                .state
                .root()
                .root()
                .clone(),
        ),
        None => None,
    };
    let r = publish::attest(file, &key, root.as_ref())?;
    let what = match r.added {
        Added::Added => "signed",
        Added::AlreadyPresent => "already signed",
    };
    out.json(
        "attest",
        serde_json::json!({
            "document": r.document.to_string(),
            "file": file.display().to_string(),
            "keyid": r.keyid.to_string(),
            "added": r.added == Added::Added,
            "signatures": count_signatures(&r.sig_path, r.document),
            "sig": r.sig_path.display().to_string(),
        }),
    );
    let _ = writeln!(
        out.text(),
        "{} {}: {what} by {} ({} signatures in {})",
        r.document,
        file.display(),
        r.keyid,
        count_signatures(&r.sig_path, r.document),
        r.sig_path.display()
    );
    Ok(())
}

fn count_signatures(path: &Path, document: crate::document::Document) -> usize {
    std::fs::read(path)
        .ok()
        .and_then(|b| crate::sig::SignatureFile::parse(document, &b).ok())
        .map_or(0, |f| f.signatures.len())
}

fn timestamp(
    bundle_dir: &Path,
    key: &Path,
    ttl: Duration,
    deployment: Option<&Path>,
    now: Time,
    out: &mut Out<'_>,
) -> Result<(), PublishError> {
    let key = SecretKey::read(key)?;
    let root = match deployment {
        Some(dir) => Some(
            Deployment::open(dir)?
                .root_history()?
                .state
                .root()
                .root()
                .clone(),
        ),
        None => None,
    };
    let ts = publish::timestamp_bundle(bundle_dir, &key, root.as_ref(), now, ttl)?;
    out.json(
        "timestamp",
        serde_json::json!({
            "version": ts.version,
            "serial": ts.manifest.serial,
            "epoch": ts.manifest.epoch,
            "manifest_sha256": ts.manifest.sha256.to_string(),
            "expires": ts.expires.to_string(),
        }),
    );
    let _ = writeln!(
        out.text(),
        "timestamp version {} names manifest serial {} (epoch {}, sha256 {}), expires {}",
        ts.version,
        ts.manifest.serial,
        ts.manifest.epoch,
        ts.manifest.sha256,
        ts.expires
    );
    Ok(())
}

fn publish_mirror(
    bundle_dir: &Path,
    to: &Path,
    key: &Path,
    ttl: Duration,
    deployment: Option<&Path>,
    now: Time,
    out: &mut Out<'_>,
) -> Result<(), PublishError> {
    let key = SecretKey::read(key)?;
    let root = match deployment {
        Some(dir) => Some(
            Deployment::open(dir)?
                .root_history()?
                .state
                .root()
                .root()
                .clone(),
        ),
        None => None,
    };
    let opts = crate::mirror::MirrorOptions {
        bundle: bundle_dir.to_path_buf(),
        to: to.to_path_buf(),
        now,
        ttl,
    };
    let r = crate::mirror::publish_mirror(&opts, &key, root.as_ref())?;
    let ts = &r.timestamp;
    out.json(
        "publish",
        serde_json::json!({
            "mirror": to.display().to_string(),
            "serial": ts.manifest.serial,
            "epoch": ts.manifest.epoch,
            "manifest_sha256": ts.manifest.sha256.to_string(),
            "timestamp_version": ts.version,
            "expires": ts.expires.to_string(),
            "blobs_written": r.blobs_written,
            "blobs_kept": r.blobs_kept,
            "roots": r.roots,
        }),
    );
    let _ = writeln!(
        out.text(),
        "published serial {} (epoch {}) to {}: {} blobs written, {} kept, {} root versions; timestamp version {} expires {}",
        ts.manifest.serial,
        ts.manifest.epoch,
        to.display(),
        r.blobs_written,
        r.blobs_kept,
        r.roots,
        ts.version,
        ts.expires
    );
    Ok(())
}

fn verify(a: &VerifyArgs, now: Time, out: &mut Out<'_>) -> Result<(), PublishError> {
    let bytes = deployment::read_bytes(&a.root)?;
    let sigs = deployment::read_bytes(&bundle::sig_path(&a.root))?;
    let trusted = TrustedRoot::bootstrap(&bytes, &sigs, None)?;
    let state = TrustState::new(trusted);
    let clock = Clock::new(a.now.unwrap_or(now)).with_max_skew(a.max_skew);
    let b = verify_bundle(&state, &a.bundle, &clock)?;
    let m = b.manifest();
    let root = b.state().root().root();
    out.json(
        "verify",
        serde_json::json!({
            "bundle": a.bundle.display().to_string(),
            "deployment": m.deployment.to_string(),
            "root_version": root.version,
            "root_updated_from": (!b.root_updates().is_empty()).then(|| state.root().root().version),
            "root_expires": root.expires.to_string(),
            "epoch": m.epoch,
            "serial": m.serial,
            "created": m.created.to_string(),
            "expires": m.expires.to_string(),
            "timestamp_version": b.timestamp().map(|t| t.version),
            "timestamp_expires": b.timestamp().map(|t| t.expires.to_string()),
            "files": m.files.len(),
            "bytes": m.files.iter().map(|f| f.size).sum::<u64>(),
            "members": m.members.iter().map(|member| serde_json::json!({
                "name": member.name, "keyid": member.keyid.to_string(), "classes": member.classes,
            })).collect::<Vec<_>>(),
        }),
    );
    let mut w = |s: String| {
        let _ = writeln!(out.text(), "{s}");
    };
    w(format!("bundle {} verified", a.bundle.display()));
    w(format!("  deployment  {}", m.deployment));
    let updates = if b.root_updates().is_empty() {
        String::new()
    } else {
        format!(" (updated from {})", state.root().root().version)
    };
    w(format!(
        "  root        version {}{updates}, expires {}",
        root.version, root.expires
    ));
    w(format!("  epoch       {}", m.epoch));
    w(format!("  serial      {}", m.serial));
    w(format!("  created     {}", m.created));
    w(format!("  expires     {}", m.expires));
    match b.timestamp() {
        Some(t) => w(format!(
            "  timestamp   version {}, expires {}",
            t.version, t.expires
        )),
        None => w("  timestamp   none".to_string()),
    }
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    w(format!("  files       {} ({bytes} bytes)", m.files.len()));
    w(format!("  members     {}", m.members.len()));
    for member in &m.members {
        w(format!(
            "    {:<16} {}  classes: {}",
            member.name,
            member.keyid,
            if member.classes.is_empty() {
                "-".to_string()
            } else {
                member.classes.join(", ")
            }
        ));
    }
    Ok(())
}

fn parse_key_id(s: &str) -> Result<KeyId, String> {
    KeyId::parse_lenient(s).map_err(|e| format!("not a key id: {e}"))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<Time, String> {
    Time::parse_rfc3339(s).map_err(|e| e.to_string())
}
