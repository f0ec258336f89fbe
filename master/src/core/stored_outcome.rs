//! [`StoredOutcome`]: a finished job's latest outcome as the runtime read it from
//! `JETWORK_RESULTS` for the engine (see `lookup.rs`): the facts a cancel or a retry of it is
//! decided from. Read from the stream leader; only the master writes outcomes, so their
//! headers are trusted as far as permissions keep others off `jetwork.results.>`.

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::jobs::JobState;
use jetwork_shared::{QueueName, WorkId};

/// A job's latest outcome as stored in `JETWORK_RESULTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    pub work_id: WorkId,
    pub queue: QueueName,
    /// `completed`, `failed` or `cancelled`.
    pub state: JobState,
    /// The submission of the run it ended (`Jetwork-Submit-Seq`).
    pub submit_seq: u64,
    /// Its last attempt (`Jetwork-Attempt`): a retry's attempts are numbered on from it.
    pub attempts: u32,
    /// What the run asked for that a retry keeps (stored with failed and cancelled outcomes;
    /// read with times relative to 0, see `JobOptions::retry_headers`).
    pub options: JobOptions,
    /// Its own sequence in `JETWORK_RESULTS`, where a failed or cancelled job's payload is
    /// stored with it.
    pub results_seq: u64,
}
