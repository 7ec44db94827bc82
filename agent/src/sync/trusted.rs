//! The verified bundle in force: read from the cache without asking the master and
//! verified again against the persisted trust state (the ratchet) on every use.
//!
//! What `run` converges when the master offers nothing newer or cannot be reached,
//! what `event`, `watch` and `plan` take their plans from, and what `push` reads the
//! member list from. Every failure is one [`BundleError`], which maps itself to an
//! exit code once.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tenet_keys::{Clock, Manifest, Time, TrustState, TrustedRoot, bundle, verify_cached};

use crate::config::Config;
use crate::exit::ExitCode;
use crate::report::Reporter;
use crate::sync::cache::{BundleFiles, Cache};

/// Why the cached bundle cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Nothing is cached.
    #[error("no cached bundle in {}: `tenet-agent run` has not fetched one yet", state_dir.display())]
    NoCache {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// The cached bundle or the trust state does not verify.
    #[error("trust refused: {0}")]
    Refused(String),
    /// The state directory, the trusted root or the blob store cannot be read.
    #[error("{0}")]
    Unusable(String),
}

impl BundleError {
    /// The exit code: 5 nothing cached, 4 refused, 7 unusable.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::NoCache { .. } => ExitCode::NoMaster,
            Self::Refused(_) => ExitCode::TrustRefused,
            Self::Unusable(_) => ExitCode::Environment,
        }
    }
}

/// The verified bundle in force, read from the cache without asking the master.
#[derive(Debug, Clone)]
pub struct CachedTree {
    /// Its policy tree (read from its blobs, each checked as it is read).
    pub files: BundleFiles,
    /// Its serial.
    pub serial: u64,
    /// `member=` and `classes=` fact overrides for the member, from the signed inventory.
    pub facts: Vec<String>,
}

/// The bundle in force in `config`'s state directory, verified again against the
/// persisted trust state (an expired one is used with a warning), and the facts
/// `member` has in its signed inventory. The caller holds the run lock, or only reads.
pub fn cached_tree(
    config: &Config,
    member: &str,
    reporter: &mut dyn Reporter,
) -> Result<CachedTree, BundleError> {
    let (_, manifest, files) = cached_bundle(config, reporter)?;
    let serial = manifest.serial;
    let facts = member_facts(member, &manifest, serial, &[], reporter);
    Ok(CachedTree {
        files,
        serial,
        facts,
    })
}

/// `member=` and `classes=` for `member` from the signed inventory (a warning when it is not there).
pub(crate) fn member_facts(
    member: &str,
    manifest: &Manifest,
    serial: u64,
    extra_classes: &[String],
    reporter: &mut dyn Reporter,
) -> Vec<String> {
    let mut classes: Vec<String> = match manifest.members.iter().find(|m| m.name == member) {
        Some(m) => m.classes.clone(),
        None => {
            reporter.warning(&format!(
                "member {member} is not in the inventory of serial {serial}"
            ));
            Vec::new()
        }
    };
    for c in extra_classes {
        if !classes.contains(c) {
            classes.push(c.clone());
        }
    }
    let classes = classes.join(",");
    let mut facts = vec![format!("member={member}")];
    if !classes.is_empty() {
        facts.push(format!("classes={classes}"));
    }
    facts
}

/// The cached bundle's manifest and tree, re-verified against the persisted trust
/// state (an expired bundle is used with a warning), without fetching anything: what
/// `push` reads the member list from, and `event` its plans.
pub fn cached_bundle(
    config: &Config,
    reporter: &mut dyn Reporter,
) -> Result<(TrustState, Manifest, BundleFiles), BundleError> {
    let cache = Cache::open(&config.state_dir).map_err(|e| {
        BundleError::Unusable(format!("cache in {}: {e}", config.state_dir.display()))
    })?;
    let Some((serial, dir)) = cache.current() else {
        return Err(BundleError::NoCache {
            state_dir: config.state_dir.clone(),
        });
    };
    let state = load_state(config, &cache)?;
    let clock = Clock::new(Time::from_system(SystemTime::now()));
    let (files, manifest, _, _) = from_cache(&state, serial, &dir, &clock, reporter)?;
    Ok((state, manifest, files))
}

/// The cached bundle at `dir`, re-verified: its tree, its manifest and serial, and
/// what expired if it did (it is enforced all the same, with a warning).
pub(crate) fn from_cache(
    state: &TrustState,
    serial: u64,
    dir: &Path,
    clock: &Clock,
    reporter: &mut dyn Reporter,
) -> Result<(BundleFiles, Manifest, u64, Option<String>), BundleError> {
    let (manifest, expired) = check_cached(state, dir, clock, reporter)?;
    let files = BundleFiles::new(dir, &manifest)
        .map_err(|e| BundleError::Unusable(format!("cannot open the blob store: {e}")))?;
    Ok((files, manifest, serial, expired))
}

/// The persisted trust state, or the enrolment root's on the first run.
pub(crate) fn load_state(config: &Config, cache: &Cache) -> Result<TrustState, BundleError> {
    let text = cache.trust_state().map_err(|e| {
        BundleError::Unusable(format!(
            "cannot read the trust state in {}: {e}",
            config.state_dir.display()
        ))
    })?;
    if let Some(text) = text {
        return TrustState::from_toml(&text).map_err(|e| {
            BundleError::Refused(format!(
                "trust state in {}: {}",
                config.state_dir.display(),
                tenet_keys::error_chain(&e)
            ))
        });
    }
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            BundleError::Unusable(format!("cannot read trusted root {}: {e}", p.display()))
        })
    };
    let bytes = read(&config.trusted_root)?;
    let sig = read(&bundle::sig_path(&config.trusted_root))?;
    let root = TrustedRoot::bootstrap(&bytes, &sig, None).map_err(|e| {
        BundleError::Refused(format!(
            "trusted root {}: {}",
            config.trusted_root.display(),
            tenet_keys::error_chain(&e)
        ))
    })?;
    Ok(TrustState::new(root))
}

/// Re-verifies the cached bundle against the trust state: roots and manifest, every
/// check but expiry ([`verify_cached`]: signatures over the exact bytes, deployment,
/// epoch, the serial ratchet and the trusted hash). Blobs are not opened here: they
/// were hashed when stored, and each is hashed again as it is read ([`BundleFiles`]).
/// An expired bundle is still enforced, with a warning, and what expired is returned;
/// any other failure refuses it. No byte of the manifest is used unless it verified.
pub(crate) fn check_cached(
    state: &TrustState,
    dir: &Path,
    clock: &Clock,
    reporter: &mut dyn Reporter,
) -> Result<(Manifest, Option<String>), BundleError> {
    match verify_cached(state, dir, clock) {
        Ok(b) if b.expired().is_empty() => Ok((b.into_manifest(), None)),
        Ok(b) => {
            let why = b
                .expired()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            reporter.warning(&format!(
                "EXPIRED: the cached bundle in {} no longer verifies as current ({why}); enforcing it anyway until the master serves a newer one",
                dir.display()
            ));
            Ok((b.into_manifest(), Some(why)))
        }
        Err(e) => Err(BundleError::Refused(format!(
            "the cached bundle in {} does not verify: {}",
            dir.display(),
            tenet_keys::error_chain(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tenet_keys::deployment::{self, Deployment, InitOptions};
    use tenet_keys::publish::{self, SignOptions, Signing};

    use super::*;
    use crate::report::Collect;
    use crate::sync::cache::TREE;

    #[test]
    fn an_expired_cached_bundle_is_enforced_with_a_warning() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now = Time::from_system(SystemTime::now());
        let deploy = dir.path().join("deploy");
        deployment::init(
            &deploy,
            &InitOptions {
                root_keys: 1,
                root_threshold: 1,
                expires_in: Duration::from_secs(30 * 86_400),
                now,
            },
        )
        .expect("init");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).expect("tree");
        crate::test_util::write(
            &tree.join("cluster.toml"),
            "[cluster]\nname = \"t\"\n\n[[member]]\nname = \"alpha\"\nhostname = \"a\"\nclasses = [\"web\"]\naddresses = [{ ip = \"10.0.0.1\", role = \"boot\" }]\n",
        );
        let mut d = Deployment::open(&deploy).expect("open");
        let (_, keyid) = deployment::node_key(&dir.path().join("node")).expect("node key");
        d.enroll("alpha", keyid).expect("enroll");
        let state_dir = dir.path().join("state");
        let cache = Cache::open(&state_dir).expect("cache");
        let staging = cache.fresh_staging().expect("staging");
        // Signed with blobs of its own: commit moves them into the store.
        std::fs::remove_file(staging.join(crate::sync::cache::BLOBS)).expect("unlink");
        let key = d.policy_key_path();
        publish::sign(
            &mut d,
            &SignOptions {
                tree,
                out: staging.clone(),
                serial: Some(1),
                expires_in: Duration::from_secs(86_400),
                now,
                signing: Signing::WithKey(key),
            },
        )
        .expect("sign");
        let root = std::fs::read(deploy.join("root/1.root.toml")).expect("root");
        let sig = std::fs::read(deploy.join("root/1.root.toml.sig")).expect("root sig");
        let state = TrustState::new(TrustedRoot::bootstrap(&root, &sig, None).expect("root"));
        let clock = Clock::new(now);
        let verified = tenet_keys::verify_bundle(&state, &staging, &clock).expect("verifies");
        let cached = cache.commit(&verified).expect("commit");
        cache.persist(verified.state()).expect("persist");
        assert_eq!(cache.current(), Some((1, cached.clone())));
        assert!(cached.join(bundle::MANIFEST).is_file());
        assert!(!staging.exists());
        let state = TrustState::from_toml(&cache.trust_state().expect("read").expect("some"))
            .expect("parses");

        // Still current: no warning.
        let mut reporter = Collect::default();
        let (m, expired) = check_cached(&state, &cached, &clock, &mut reporter).expect("current");
        assert_eq!(expired, None);
        assert_eq!(m.serial, 1);
        assert!(reporter.warnings.is_empty(), "{:?}", reporter.warnings);

        // Two days later the manifest has expired: enforced, loudly.
        let later = Clock::new(
            now.checked_add(Duration::from_secs(2 * 86_400))
                .expect("time"),
        );
        let (m, expired) =
            check_cached(&state, &cached, &later, &mut reporter).expect("still enforced");
        assert!(expired.is_some_and(|e| e.contains("expired")));
        assert_eq!(m.members[0].classes, ["web"]);
        assert_eq!(reporter.warnings.len(), 1);
        assert!(
            reporter.warnings[0].starts_with("EXPIRED"),
            "{:?}",
            reporter.warnings
        );

        // The policy reads from the blobs, each checked as it is read.
        let files = BundleFiles::new(&cached, &m).expect("store");
        let policy = tenet_policies::load_from(&files.tree(), &files).expect("loads");
        assert_eq!(policy.cluster.members[0].name, "alpha");

        let blob = std::fs::read_dir(cached.join(bundle::BLOB_DIR))
            .expect("blobs")
            .next()
            .expect("one blob")
            .expect("entry")
            .path();
        let original = std::fs::read(&blob).expect("blob");
        // A cached blob changed in place, same size: the bundle's documents still
        // verify (blobs are not hashed again there), but not a byte of it is used:
        // loading the policy refuses it.
        let mut changed = original.clone();
        changed[0] ^= 0x20;
        crate::test_util::write(&blob, std::str::from_utf8(&changed).expect("text"));
        check_cached(&state, &cached, &clock, &mut reporter).expect("documents verify");
        let diags = tenet_policies::load_from(&files.tree(), &files).expect_err("refused");
        let text = diags.to_string();
        assert!(
            text.contains("does not match") || text.contains("sha256"),
            "{text}"
        );
        // A blob of another size, or none at all: refused as it is read.
        crate::test_util::write(&blob, "changed");
        check_cached(&state, &cached, &clock, &mut reporter).expect("documents verify");
        let diags = tenet_policies::load_from(&files.tree(), &files).expect_err("refused");
        assert!(diags.to_string().contains("blob for"), "{diags}");
        assert!(
            !blob.exists(),
            "a damaged blob is set aside for the next run to fetch"
        );
        let diags = tenet_policies::load_from(&files.tree(), &files).expect_err("refused");
        assert!(diags.to_string().contains("blob for"), "{diags}");
        // A file in the bundle directory that the manifest does not name is never read.
        crate::test_util::write(&blob, std::str::from_utf8(&original).expect("text"));
        crate::test_util::write(
            &cached.join(TREE).join("extra.toml"),
            "[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\n",
        );
        let policy = tenet_policies::load_from(&files.tree(), &files).expect("loads");
        assert!(policy.promises.is_empty());
    }
}
