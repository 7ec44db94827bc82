//! Fuzz the manifest parser (paths, inventory) and the path rule.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = tenet_keys::Manifest::parse(data) {
        // Whatever parses has only safe, unique paths.
        for f in &m.files {
            assert!(tenet_keys::path::check_path(&f.path).is_ok());
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = tenet_keys::path::check_path(s);
    }
});
