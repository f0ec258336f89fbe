//! [`QueueName`]: the name of a work queue, the last token of `jetwork.submit.<queue>`.
//! Invariant: 1 to 64 characters of `[A-Za-z0-9_-]`.

use crate::name::{self, validated_name, InvalidName};

validated_name!(
    /// A validated queue name.
    QueueName,
    "queue name",
    64
);

impl QueueName {
    /// Validates a queue name.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        name::check("queue name", value, Self::MAX_LEN)?;
        Ok(QueueName::checked(value))
    }

    /// The queue used when none is given: `default`.
    pub fn default_queue() -> Self {
        QueueName::checked("default")
    }
}
