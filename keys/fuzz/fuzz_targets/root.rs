//! Fuzz the root parser and a bootstrap with the input as both document and signatures.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tenet_keys::Root::parse(data);
    let _ = tenet_keys::TrustedRoot::bootstrap(data, data, None);
    let _ = tenet_keys::sig::SignatureFile::parse(tenet_keys::Document::Root, data);
});
