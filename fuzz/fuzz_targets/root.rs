//! Fuzz the root parser, the signature file parser and a bootstrap.
//!
//! Bootstrap takes a document and its signatures: the input is split at its first NUL
//! byte into the two (so a seed `root.toml NUL root.toml.sig` bootstraps), or, without
//! one, is both.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (document, signatures) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let _ = tenet_keys::Root::parse(document);
    let _ = tenet_keys::sig::SignatureFile::parse(tenet_keys::Document::Root, signatures);
    let _ = tenet_keys::TrustedRoot::bootstrap(document, signatures, None);
});
