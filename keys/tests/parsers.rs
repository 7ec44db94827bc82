//! The parsers never panic: not on arbitrary bytes, not on mutations of valid documents.

use std::sync::OnceLock;

use proptest::prelude::*;
use tenet_keys::sig::SignatureFile;
use tenet_keys::{Document, Manifest, Root, Timestamp, TrustState, TrustedRoot};

use crate::util::{Fx, NOW, t};

fn parse_all(bytes: &[u8]) {
    let _ = Root::parse(bytes);
    let _ = Manifest::parse(bytes);
    let _ = Timestamp::parse(bytes);
    let _ = SignatureFile::parse(Document::Manifest, bytes);
    let _ = TrustedRoot::bootstrap(bytes, bytes, None);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = TrustState::from_toml(text);
    }
}

/// A root, a manifest, a timestamp, a signature file and a trust state, made once.
fn valid_documents() -> &'static [String] {
    static DOCS: OnceLock<Vec<String>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let fx = Fx::new();
        let (m, ms) = fx.signed(&fx.manifest(1));
        let (ts, _) = fx.signed_ts(&fx.timestamp_for(&m, NOW, t(NOW + 3600)));
        vec![
            fx.root_text.clone(),
            m,
            ts,
            ms,
            fx.state().to_toml().unwrap(),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&bytes);
    }

    #[test]
    fn tomlish_text_never_panics(text in "(schema = 1\n|kind = \"(root|manifest|timestamp)\"\n|\\[\\[?[a-z.]{1,12}\\]\\]?\n|[a-z_]{1,12} = (\"[0-9a-f]{0,70}\"|[0-9]{1,20}|2027-11-21T00:00:00Z|\\[\\])\n){0,24}") {
        parse_all(text.as_bytes());
    }

    #[test]
    fn mutated_documents_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let docs = valid_documents();
        let mut bytes = docs[which].clone().into_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        parse_all(&bytes);
    }
}
