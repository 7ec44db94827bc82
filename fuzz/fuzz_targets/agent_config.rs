//! Fuzz the agent's `agent.toml` parser (`tenet_agent::config::Config::parse`).
//!
//! Whatever parses names a member of safe characters, a master with a host and a port
//! that is not 0, and a connect timeout that is not 0.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tenet_agent::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, Path::new("/etc/tenet")) {
        assert!(!config.member.is_empty());
        assert!(
            config
                .member
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        );
        assert!(!config.host.is_empty() && config.port != 0);
        assert!(!config.connect_timeout.is_zero() && config.push.port != 0);
        let _ = config.master();
    }
});
