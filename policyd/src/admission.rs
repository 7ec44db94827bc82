//! Connection admission on one TLS socket: who may hold a slot, and for how long, before
//! and after the TLS handshake.
//!
//! A TCP connection costs nothing to open, and before its handshake finishes nothing is
//! known of the client but its address. So the slots a client can hold without a key are
//! few and short, and counted per source address:
//!
//! - at most `max_handshakes_per_address` handshakes in progress from one address, and
//!   `max_handshakes` from all addresses together, each for at most
//!   `handshake_timeout`;
//! - at most `max_connections_per_address` open connections (handshaking or past it)
//!   from one address;
//! - at most `max_connections` connections past their handshake, a budget separate from
//!   the handshakes', so clients still handshaking never take an authenticated client's
//!   place, and the reverse.
//!
//! A connection over any limit is closed at once, never queued: a queue of unanswered
//! connections is exactly what let idle sockets lock members out. IPv6 addresses count
//! per /64 (one host usually holds a whole /64); an IPv4-mapped address counts as its
//! IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::metrics::HandshakeRefusal;

/// The slots of one socket.
#[derive(Debug)]
pub(crate) struct Admission {
    handshakes: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    max_handshakes: usize,
    per_address: Arc<Mutex<HashMap<IpAddr, Counts>>>,
    max_open_per_address: usize,
    max_handshakes_per_address: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    open: usize,
    handshaking: usize,
}

/// A connection's place: its address's counts, and a handshake slot or a connection
/// slot. Dropping it gives everything back.
#[derive(Debug)]
pub(crate) struct Slot {
    address: IpAddr,
    per_address: Arc<Mutex<HashMap<IpAddr, Counts>>>,
    handshaking: bool,
    permit: Option<OwnedSemaphorePermit>,
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Admission {
        Admission {
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            max_handshakes: limits.max_handshakes,
            per_address: Arc::default(),
            max_open_per_address: limits.max_connections_per_address,
            max_handshakes_per_address: limits.max_handshakes_per_address,
        }
    }

    /// A slot for a new connection from `peer` to handshake in, or why there is none.
    pub(crate) fn admit(&self, peer: IpAddr) -> Result<Slot, HandshakeRefusal> {
        let address = group(peer);
        let mut map = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counts = map.get(&address).copied().unwrap_or_default();
        if counts.open >= self.max_open_per_address
            || counts.handshaking >= self.max_handshakes_per_address
        {
            return Err(HandshakeRefusal::AddressLimit);
        }
        let Ok(permit) = self.handshakes.clone().try_acquire_owned() else {
            return Err(HandshakeRefusal::HandshakeLimit);
        };
        map.insert(
            address,
            Counts {
                open: counts.open + 1,
                handshaking: counts.handshaking + 1,
            },
        );
        Ok(Slot {
            address,
            per_address: self.per_address.clone(),
            handshaking: true,
            permit: Some(permit),
        })
    }

    /// Moves a slot whose handshake finished to the connection budget; `Err` (and the
    /// slot dropped) when that budget is spent.
    pub(crate) fn established(&self, mut slot: Slot) -> Result<Slot, HandshakeRefusal> {
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| HandshakeRefusal::ConnectionLimit)?;
        slot.end_handshake();
        slot.permit = Some(permit);
        Ok(slot)
    }

    /// Whether handshake slots are scarce (half or more in use): then a refused
    /// handshake is closed at once rather than lingered over.
    pub(crate) fn scarce(&self) -> bool {
        self.handshakes.available_permits() * 2 <= self.max_handshakes
    }
}

impl Slot {
    fn end_handshake(&mut self) {
        if !self.handshaking {
            return;
        }
        self.handshaking = false;
        let mut map = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get_mut(&self.address) {
            c.handshaking = c.handshaking.saturating_sub(1);
        }
        // The handshake permit goes back with the caller's replacement of `permit`.
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get_mut(&self.address) {
            c.open = c.open.saturating_sub(1);
            if self.handshaking {
                c.handshaking = c.handshaking.saturating_sub(1);
            }
            if c.open == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by
/// its /64.
fn group(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 2,
            max_connections_per_address: 3,
            max_handshakes: 4,
            max_handshakes_per_address: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn per_address_and_global_caps() {
        let a = Admission::new(&limits());
        let one: IpAddr = "127.0.0.2".parse().unwrap();
        let two: IpAddr = "127.0.0.3".parse().unwrap();
        let h1 = a.admit(one).unwrap();
        let h2 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).unwrap_err(), HandshakeRefusal::AddressLimit);
        // Past its handshake, a connection still counts as open for its address.
        let e1 = a.established(h1).unwrap();
        let h3 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).unwrap_err(), HandshakeRefusal::AddressLimit);
        // Another address has its own counts, within the global handshake budget.
        let h4 = a.admit(two).unwrap();
        let h5 = a.admit(two).unwrap();
        assert!(a.scarce());
        assert_eq!(
            a.admit("127.0.0.4".parse().unwrap()).unwrap_err(),
            HandshakeRefusal::HandshakeLimit
        );
        let e2 = a.established(h4).unwrap();
        assert_eq!(
            a.established(h5).unwrap_err(),
            HandshakeRefusal::ConnectionLimit
        );
        drop((e1, e2, h2, h3));
        assert!(a.per_address.lock().unwrap().is_empty());
        assert!(!a.scarce());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            group("2001:db8:1:2:aaaa::1".parse().unwrap()),
            group("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            group("2001:db8:1:2::1".parse().unwrap()),
            group("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            group("::ffff:127.0.0.2".parse().unwrap()),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }
}
