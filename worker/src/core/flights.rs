//! [`Flights`]: the requests this worker has sent and not yet had answered, by [`RequestId`].
//!
//! A flight is *current* while its answer should be acted on in full: its slots count as
//! asked for, and its failure is handled. When the lease confirms a new master, every flight
//! is *released*: the old master will never answer what it was holding, and the slots it was
//! asked for are asked of the new one at once. A released flight stays here until the runtime
//! delivers its (late) reply, which is then still used for what it says about work (verdicts,
//! assignments from a confirmed master) but never again for slot accounting, so a slot is
//! neither lost nor counted twice.
//!
//! Invariants: at most one current registration and one current request for work; ids only
//! grow; `asked` is the sum of the current flights' slots.

use std::collections::BTreeMap;

use jetwork_shared::Token;

use super::{Key, Millis, RequestId};

/// What a request was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Register,
    /// A request for `slots` items; `waited`: a long poll.
    Work {
        slots: u32,
        waited: bool,
    },
    /// A report asking for `slots` items, with the completed and failed outcomes it carried
    /// and the token each went with (a verdict settles an outcome only under that token).
    Report {
        slots: u32,
        sent: BTreeMap<Key, Token>,
    },
}

/// One request awaiting its reply.
#[derive(Debug, Clone)]
pub(super) struct Flight {
    pub kind: Kind,
    pub sent_at: Millis,
    pub current: bool,
}

impl Flight {
    /// The slots it asks for while current.
    fn slots(&self) -> u32 {
        match &self.kind {
            Kind::Register => 0,
            Kind::Work { slots, .. } | Kind::Report { slots, .. } => *slots,
        }
    }
}

/// The requests in flight.
#[derive(Debug, Clone, Default)]
pub(super) struct Flights {
    last_id: RequestId,
    flights: BTreeMap<RequestId, Flight>,
}

impl Flights {
    /// Records a request sent now; returns its id.
    pub fn open(&mut self, kind: Kind, now: Millis) -> RequestId {
        self.last_id += 1;
        self.flights.insert(self.last_id, Flight { kind, sent_at: now, current: true });
        self.last_id
    }

    /// Takes the flight `id` answers, if it is one of ours and of the kind `is` accepts.
    pub fn take(&mut self, id: RequestId, is: impl Fn(&Kind) -> bool) -> Option<Flight> {
        if !self.flights.get(&id).is_some_and(|f| is(&f.kind)) {
            return None;
        }
        self.flights.remove(&id)
    }

    /// Slots asked for by current requests.
    pub fn asked(&self) -> u32 {
        self.flights.values().filter(|f| f.current).map(Flight::slots).fold(0, u32::saturating_add)
    }

    /// A registration is in flight (a new one would only duplicate it).
    pub fn registering(&self) -> bool {
        self.flights.values().any(|f| f.current && f.kind == Kind::Register)
    }

    /// A request for work is in flight (the master keeps one open request per worker).
    pub fn requesting(&self) -> bool {
        self.flights.values().any(|f| f.current && matches!(f.kind, Kind::Work { .. }))
    }

    /// A current report went out less than `resend` ago: the next waits for its reply (so
    /// that what finishes meanwhile goes together), unless something is due for re-sending.
    pub fn report_recent(&self, now: Millis, resend: Millis) -> bool {
        self.flights.values().any(|f| {
            f.current
                && matches!(f.kind, Kind::Report { .. })
                && now < f.sent_at.saturating_add(resend)
        })
    }

    /// Releases every current flight (a new master); returns the slots they asked for and
    /// whether a request for work was among them.
    pub fn release(&mut self) -> (u32, bool) {
        let (slots, requesting) = (self.asked(), self.requesting());
        for flight in self.flights.values_mut() {
            flight.current = false;
        }
        (slots, requesting)
    }

    /// Every flight, for the invariant checks.
    pub fn iter(&self) -> impl Iterator<Item = (RequestId, &Flight)> {
        self.flights.iter().map(|(id, f)| (*id, f))
    }
}
