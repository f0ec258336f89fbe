//! [`Bookkeeping`]: the headers only the master sets on a submission
//! (`headers::MASTER_ONLY`), as a stored submission carried them, raw. Who may say them is the
//! engine's to judge (`engine/intake.rs`): on a client's submission they are a reason to reject
//! it; on the master's own they name the decision it was made for.

use jetwork_shared::headers;

/// The master-only headers of a stored submission ([`headers::MASTER_ONLY`]), raw. On a
/// client's submission any of them is a reason to reject it (unless an older master stored it
/// there before the upgrade, see `State::legacy_through`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// `Jetwork-Work-Id`: the work id a master submission runs.
    pub work_id: Option<String>,
    /// `Jetwork-Retry-Of`: the work id an older master's retry ran again.
    pub retry_of: Option<String>,
    /// `Jetwork-Prior-Attempts`: an older master's retry's count of earlier attempts.
    pub prior_attempts: Option<String>,
    /// `Jetwork-Schedule`, `Jetwork-Scheduled-At`: a tick's schedule and time.
    pub schedule: Option<String>,
    pub scheduled_at: Option<String>,
}

impl Bookkeeping {
    /// Reads the master-only headers through `get` (a lookup by name).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Bookkeeping {
        let own = |name| get(name).map(str::to_owned);
        Bookkeeping {
            work_id: own(headers::WORK_ID),
            retry_of: own(headers::RETRY_OF),
            prior_attempts: own(headers::PRIOR_ATTEMPTS),
            schedule: own(headers::SCHEDULE),
            scheduled_at: own(headers::SCHEDULED_AT),
        }
    }

    /// The names of the master-only headers present, in [`headers::MASTER_ONLY`] order.
    pub fn present(&self) -> Vec<&'static str> {
        let values = [
            &self.retry_of,
            &self.prior_attempts,
            &self.schedule,
            &self.scheduled_at,
            &self.work_id,
        ];
        headers::MASTER_ONLY
            .iter()
            .zip(values)
            .filter(|(_, value)| value.is_some())
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_master_only_header_is_read_and_named() {
        let all = |name: &str| headers::MASTER_ONLY.contains(&name).then_some("x");
        let read = Bookkeeping::read(all);
        assert_eq!(read.present(), headers::MASTER_ONLY.to_vec());
        assert!(Bookkeeping::read(|_| None).present().is_empty());
        let one = Bookkeeping::read(|name| (name == headers::SCHEDULE).then_some("beat"));
        assert_eq!(one.present(), vec![headers::SCHEDULE]);
    }
}
