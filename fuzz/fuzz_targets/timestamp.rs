//! Fuzz the timestamp parser and the persisted trust state reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tenet_keys::Timestamp::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = tenet_keys::TrustState::from_toml(s);
        let _ = tenet_keys::Time::parse_rfc3339(s);
    }
});
