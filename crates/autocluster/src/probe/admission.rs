//! Which connections the listener keeps while their handshakes run: at most a fixed number,
//! and at most a few from one source address. When either is full, the oldest connection
//! that has not proved the cookie gives way to the new one (one that has sent nothing yet
//! before one that sent its HELLO), so connections that only wait cannot crowd out a real
//! probe, which sends its HELLO at once and finishes in two round trips.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// How far a connection got; a connection gives way only before [`Stage::Settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Accepted; no complete message yet.
    Silent,
    /// Its HELLO arrived; its PROOF has not.
    Greeted,
    /// The verdict is reached and being sent: it ends in a moment.
    Settled,
}

/// Why a connection was closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Its source address held as many connections as one source may.
    Source(usize),
    /// The listener held as many connections as it may.
    Listener(usize),
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Full::Source(n) => write!(f, "its source address already had {n}"),
            Full::Listener(n) => write!(f, "the listener already had {n}"),
        }
    }
}

/// A connection closed to make room: who it was, why, and its task to abort.
pub(crate) struct Evicted {
    pub peer: SocketAddr,
    pub full: Full,
    pub task: Option<AbortHandle>,
}

/// The connections being served, shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub(crate) struct Admission {
    table: Mutex<Table>,
    max: usize,
    per_source: usize,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// By id, which grows with each connection: the first is the oldest.
    conns: BTreeMap<u64, Conn>,
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    stage: Stage,
    task: Option<AbortHandle>,
}

impl Admission {
    /// At most `max` connections, at most `per_source` from one IP address (both at least 1).
    pub fn new(max: usize, per_source: usize) -> Arc<Admission> {
        Arc::new(Admission {
            table: Mutex::default(),
            max: max.max(1),
            per_source: per_source.max(1),
        })
    }

    /// Makes room for a connection from `peer`: its ticket, and the connections that gave
    /// way (the caller aborts their tasks). `Err` when none could give way (every one is
    /// finishing): the caller closes the new connection, counted as evicted itself.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<(Ticket, Vec<Evicted>), Full> {
        let mut t = self.lock();
        let mut evicted = Vec::new();
        let same_source = |c: &Conn| c.peer.ip() == peer.ip();
        if t.conns.values().filter(|c| same_source(c)).count() >= self.per_source {
            let full = Full::Source(self.per_source);
            evicted.push(t.evict(same_source, full).ok_or(full)?);
        }
        if t.conns.len() >= self.max {
            let full = Full::Listener(self.max);
            evicted.push(t.evict(|_| true, full).ok_or(full)?);
        }
        let id = t.next;
        t.next += 1;
        t.conns.insert(
            id,
            Conn {
                peer,
                stage: Stage::Silent,
                task: None,
            },
        );
        let ticket = Ticket {
            admission: self.clone(),
            id,
        };
        Ok((ticket, evicted))
    }

    /// Records the task serving connection `id`, so that it can be aborted if it gives
    /// way. Nothing to do when the task has already ended.
    pub fn served_by(&self, id: u64, task: AbortHandle) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.task = Some(task);
        }
    }

    /// How many connections are being served.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Table {
    /// Removes the connection that gives way among those `which` selects: the oldest silent
    /// one, else the oldest greeted one; never one that is settled.
    fn evict(&mut self, which: impl Fn(&Conn) -> bool, full: Full) -> Option<Evicted> {
        let (&id, _) = self
            .conns
            .iter()
            .filter(|(_, c)| which(c) && c.stage < Stage::Settled)
            .min_by_key(|(id, c)| (c.stage, **id))?;
        let c = self.conns.remove(&id)?;
        Some(Evicted {
            peer: c.peer,
            full,
            task: c.task,
        })
    }
}

/// One admitted connection's place in the table; dropping it (the task ended, or was
/// aborted) frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
}

impl Ticket {
    /// The connection's place, for [`Admission::served_by`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records how far the handshake got.
    pub fn advance(&self, stage: Stage) {
        if let Some(c) = self.admission.lock().conns.get_mut(&self.id) {
            c.stage = stage;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().conns.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn the_oldest_silent_connection_gives_way_first() {
        let a = Admission::new(3, 8);
        let (t1, e) = a.admit(at([10, 0, 0, 1], 1)).unwrap();
        assert!(e.is_empty());
        let (t2, _) = a.admit(at([10, 0, 0, 2], 1)).unwrap();
        let (t3, _) = a.admit(at([10, 0, 0, 3], 1)).unwrap();
        // The oldest has sent its HELLO: the oldest still silent gives way instead.
        t1.advance(Stage::Greeted);
        let (_t4, e) = a.admit(at([10, 0, 0, 4], 1)).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].peer, at([10, 0, 0, 2], 1));
        assert_eq!(e[0].full, Full::Listener(3));
        assert_eq!(a.len(), 3);
        // Its ticket dropping later (the aborted task) changes nothing.
        drop(t2);
        assert_eq!(a.len(), 3);
        // A settled connection never gives way; a greeted one does when nothing is silent.
        t3.advance(Stage::Settled);
        _t4.advance(Stage::Greeted);
        let (_t5, e) = a.admit(at([10, 0, 0, 5], 1)).unwrap();
        assert_eq!(e[0].peer, at([10, 0, 0, 1], 1));
        drop(t1);
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let a = Admission::new(100, 2);
        let flood = [192, 0, 2, 7];
        let (_f1, _) = a.admit(at(flood, 1)).unwrap();
        let (_f2, _) = a.admit(at(flood, 2)).unwrap();
        let (_other, e) = a.admit(at([10, 0, 0, 1], 1)).unwrap();
        assert!(e.is_empty(), "another source is not limited by the first");
        let (_f3, e) = a.admit(at(flood, 3)).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].peer, e[0].full), (at(flood, 1), Full::Source(2)));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn when_nothing_can_give_way_the_new_connection_is_refused() {
        let a = Admission::new(1, 1);
        let (t, _) = a.admit(at([10, 0, 0, 1], 1)).unwrap();
        t.advance(Stage::Settled);
        assert_eq!(a.admit(at([10, 0, 0, 2], 1)).err(), Some(Full::Listener(1)));
        assert_eq!(a.admit(at([10, 0, 0, 1], 2)).err(), Some(Full::Source(1)));
        drop(t);
        assert_eq!(a.len(), 0);
        assert!(a.admit(at([10, 0, 0, 2], 1)).is_ok());
    }
}
