//! Fuzz policyd's `policyd.toml` parser (`tenet_policyd::config::Config::parse`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tenet_policyd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(Path::new("/etc/tenet/policyd.toml"), text) {
        let _ = config.control_socket();
    }
});
