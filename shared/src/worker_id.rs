//! [`WorkerId`]: the identity a worker process registers under. It is unique per process
//! lifetime (a restarted worker is a new worker) and names the worker's notification subject
//! `jetwork.worker.<id>.ready`. Invariant: 1 to 128 characters of `[A-Za-z0-9_-]`.

use crate::name::{self, validated_name, InvalidName};

validated_name!(
    /// A validated worker id.
    WorkerId,
    "worker id",
    128
);

impl WorkerId {
    /// Validates a worker id.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        name::check("worker id", value, Self::MAX_LEN)?;
        Ok(WorkerId::checked(value))
    }

    /// A fresh random id (`w-<uuid v4 simple>`).
    pub fn random() -> Self {
        WorkerId::checked(&format!("w-{}", uuid::Uuid::new_v4().simple()))
    }
}
