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
//! connections is exactly what let idle sockets lock members out. When the handshake
//! slots (of an address, or of the socket) are all taken, a new connection takes the
//! oldest one's place and that connection is closed, so idle sockets hold a slot only
//! until newer connections come, and a member's handshake (milliseconds) is not kept
//! out by them, not even from its own address. IPv6 addresses count
//! per /64 (one host usually holds a whole /64); an IPv4-mapped address counts as its
//! IPv4 address.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::config::Limits;
use crate::metrics::{HandshakeRefusal, Metrics, Site};

/// The slots of one socket.
#[derive(Debug)]
pub(crate) struct Admission {
    connections: Arc<Semaphore>,
    table: Arc<Mutex<Table>>,
    max_handshakes: usize,
    max_open_per_address: usize,
    max_handshakes_per_address: usize,
}

/// Who holds what, under one lock.
#[derive(Debug)]
struct Table {
    per_address: HashMap<IpAddr, Counts>,
    /// The handshakes in progress, oldest first: their address, and how to end one.
    handshakes: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    next: u64,
    gauge: Option<(Metrics, Site)>,
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
    id: u64,
    address: IpAddr,
    table: Arc<Mutex<Table>>,
    handshaking: bool,
    permit: Option<OwnedSemaphorePermit>,
    /// Resolves when a newer connection took this one's handshake slot.
    evicted: Option<oneshot::Receiver<()>>,
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Admission {
        Admission {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            table: Arc::new(Mutex::new(Table {
                per_address: HashMap::new(),
                handshakes: BTreeMap::new(),
                next: 0,
                gauge: None,
            })),
            max_handshakes: limits.max_handshakes,
            max_open_per_address: limits.max_connections_per_address,
            max_handshakes_per_address: limits.max_handshakes_per_address,
        }
    }

    /// Reports the handshakes in progress as `site`'s gauge in `metrics`.
    pub(crate) fn with_gauge(self, metrics: Metrics, site: Site) -> Admission {
        lock(&self.table).gauge = Some((metrics, site));
        self
    }

    /// A slot for a new connection from `peer` to handshake in, or why there is none.
    ///
    /// When `peer`'s address already has as many handshakes in progress as one address
    /// may, or the socket as many as it allows, the **oldest** handshake in progress
    /// (of that address, or of the socket) is ended to make room, rather than the new
    /// connection refused: a client that sends nothing holds a slot only until newer
    /// connections arrive, so idle sockets cannot keep a member's handshake out, not
    /// from the member's own address either (a local user, a NAT). Only connections
    /// past their handshake are never ended for room; an address whose open
    /// connections are all past it is refused.
    pub(crate) fn admit(&self, peer: IpAddr) -> Result<Slot, HandshakeRefusal> {
        let address = group(peer);
        let mut table = lock(&self.table);
        let counts = table.per_address.get(&address).copied().unwrap_or_default();
        if counts.handshaking >= self.max_handshakes_per_address
            || (counts.open >= self.max_open_per_address && counts.handshaking > 0)
        {
            table.evict_oldest(Some(address));
        } else if counts.open >= self.max_open_per_address {
            return Err(HandshakeRefusal::AddressLimit);
        }
        if table.handshakes.len() >= self.max_handshakes {
            table.evict_oldest(None);
        }
        let id = table.next;
        table.next += 1;
        let (tx, rx) = oneshot::channel();
        table.handshakes.insert(id, (address, tx));
        let c = table.per_address.entry(address).or_default();
        c.open += 1;
        c.handshaking += 1;
        table.publish();
        Ok(Slot {
            id,
            address,
            table: self.table.clone(),
            handshaking: true,
            permit: None,
            evicted: Some(rx),
        })
    }

    /// Moves a slot whose handshake finished to the connection budget; `Err` (and the
    /// slot dropped) when that budget is spent, or when the slot was just given to a
    /// newer connection.
    pub(crate) fn established(&self, mut slot: Slot) -> Result<Slot, HandshakeRefusal> {
        if !slot.end_handshake() {
            return Err(HandshakeRefusal::Evicted);
        }
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| HandshakeRefusal::ConnectionLimit)?;
        slot.permit = Some(permit);
        Ok(slot)
    }

    /// Whether handshake slots are scarce (half or more in use): then a refused
    /// handshake is closed at once rather than lingered over.
    pub(crate) fn scarce(&self) -> bool {
        lock(&self.table).handshakes.len() * 2 >= self.max_handshakes
    }
}

impl Table {
    /// Ends the oldest handshake in progress (of `address` only, if given): its counts
    /// are given back now, and its connection is told to close.
    fn evict_oldest(&mut self, address: Option<IpAddr>) {
        let oldest = self
            .handshakes
            .iter()
            .find(|(_, (a, _))| address.is_none_or(|want| *a == want))
            .map(|(id, _)| *id);
        let Some(id) = oldest else { return };
        let Some((a, tx)) = self.handshakes.remove(&id) else {
            return;
        };
        let _ = tx.send(());
        self.release(a, true);
        if let Some((metrics, site)) = &self.gauge {
            metrics.handshake_refused(*site, HandshakeRefusal::Evicted);
        }
    }

    /// Gives back one open connection of `address` (and its handshake slot).
    fn release(&mut self, address: IpAddr, handshaking: bool) {
        if let Some(c) = self.per_address.get_mut(&address) {
            c.open = c.open.saturating_sub(1);
            if handshaking {
                c.handshaking = c.handshaking.saturating_sub(1);
            }
            if c.open == 0 {
                self.per_address.remove(&address);
            }
        }
    }

    fn publish(&self) {
        if let Some((metrics, site)) = &self.gauge {
            metrics.handshakes_in_progress(*site, self.handshakes.len());
        }
    }
}

impl Slot {
    /// Takes the eviction signal, for the handshake to watch.
    pub(crate) fn evicted(&mut self) -> Option<oneshot::Receiver<()>> {
        self.evicted.take()
    }

    /// Ends the handshake's hold; `false` if it had already been evicted.
    fn end_handshake(&mut self) -> bool {
        if !self.handshaking {
            return true;
        }
        self.handshaking = false;
        let mut table = lock(&self.table);
        if table.handshakes.remove(&self.id).is_none() {
            // Evicted: its counts were given back then. Nothing is held now.
            self.id = u64::MAX;
            return false;
        }
        if let Some(c) = table.per_address.get_mut(&self.address) {
            c.handshaking = c.handshaking.saturating_sub(1);
        }
        table.publish();
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let mut table = lock(&self.table);
        if self.handshaking && table.handshakes.remove(&self.id).is_none() {
            // Evicted: given back already.
            return;
        }
        table.release(self.address, self.handshaking);
        table.publish();
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn empty(a: &Admission) -> bool {
        let t = lock(&a.table);
        t.per_address.is_empty() && t.handshakes.is_empty()
    }

    fn was_evicted(slot: &mut Slot) -> bool {
        slot.evicted
            .as_mut()
            .is_some_and(|rx| rx.try_recv().is_ok())
    }

    #[test]
    fn per_address_and_global_caps() {
        let a = Admission::new(&limits());
        let one: IpAddr = "127.0.0.2".parse().unwrap();
        let two: IpAddr = "127.0.0.3".parse().unwrap();
        let mut h1 = a.admit(one).unwrap();
        let mut h2 = a.admit(one).unwrap();
        // A third handshake from one address takes the oldest one's place.
        let mut h3 = a.admit(one).unwrap();
        assert!(was_evicted(&mut h1));
        assert!(!was_evicted(&mut h2) && !was_evicted(&mut h3));
        assert_eq!(a.established(h1).unwrap_err(), HandshakeRefusal::Evicted);
        // Past its handshake, a connection still counts as open for its address, and is
        // never evicted; at the open cap a new handshake ends the address's oldest one.
        let e2 = a.established(h2).unwrap();
        let e3 = a.established(h3).unwrap();
        let mut h4 = a.admit(one).unwrap();
        let h5 = a.admit(one).unwrap();
        assert!(was_evicted(&mut h4));
        assert_eq!(
            a.established(h5).unwrap_err(),
            HandshakeRefusal::ConnectionLimit
        );
        drop(h4);
        // Another address has its own counts, within the global handshake budget; past
        // it, the oldest handshake of any address makes room.
        let mut g: Vec<Slot> = (0..4).map(|_| a.admit(two).unwrap()).collect();
        assert!(was_evicted(&mut g[0]) && was_evicted(&mut g[1]));
        let mut others: Vec<Slot> = (4..6)
            .map(|i| a.admit(IpAddr::from([127, 0, 0, i])).unwrap())
            .collect();
        assert!(a.scarce());
        let mut newest = a.admit("127.0.0.9".parse().unwrap()).unwrap();
        assert!(was_evicted(&mut g[2]));
        assert!(!was_evicted(&mut g[3]) && !was_evicted(&mut newest));
        assert!(others.iter_mut().all(|s| !was_evicted(s)));
        drop((e2, e3, g, others, newest));
        assert!(empty(&a), "{:?}", lock(&a.table));
        assert!(!a.scarce());
    }

    #[test]
    fn the_open_cap_refuses_when_only_established_connections_hold_it() {
        let a = Admission::new(&Limits {
            max_connections: 8,
            max_connections_per_address: 2,
            max_handshakes: 8,
            max_handshakes_per_address: 2,
            ..Limits::default()
        });
        let one: IpAddr = "127.0.0.2".parse().unwrap();
        let e1 = a.established(a.admit(one).unwrap()).unwrap();
        let e2 = a.established(a.admit(one).unwrap()).unwrap();
        assert_eq!(a.admit(one).unwrap_err(), HandshakeRefusal::AddressLimit);
        drop(e1);
        let e3 = a.established(a.admit(one).unwrap()).unwrap();
        drop((e2, e3));
        assert!(empty(&a));
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
