//! Gathers this member's facts from the machine: hostname, addresses, OS.
//!
//! Loopback and IPv6 link-local addresses are left out: they are never a member's
//! cluster address. `--fact` overrides are applied by the caller.

use std::net::IpAddr;

use tenet_policies::Facts;

/// Facts read from this machine. Never fails: what cannot be read is left empty.
pub fn gather() -> Facts {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mut addresses: Vec<IpAddr> = Vec::new();
    if let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() {
        for a in ifaddrs {
            let Some(addr) = a.address else { continue };
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if !ip.is_loopback() && !link_local && !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
    }
    Facts {
        hostname,
        addresses,
        os: std::env::consts::OS.to_string(),
        ..Facts::default()
    }
}

/// Applies `KEY=VALUE` overrides in order.
pub fn apply_overrides(
    facts: &mut Facts,
    overrides: &[String],
) -> Result<(), tenet_policies::facts::FactError> {
    for f in overrides {
        facts.set(f)?;
    }
    Ok(())
}
