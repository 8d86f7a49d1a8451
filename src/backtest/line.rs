//! What every history source hands out with its lines: where a line came
//! from ([`LineRef`]) and what a read read ([`InputStats`]). Shared by the
//! files of [`super::input`] and the topics of [`super::kafka_input`].

/// Where a line came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    /// Index of the file in the input list. Kafka: index of the partition
    /// among those read (topics in the order given, each topic's partitions
    /// by number).
    pub(crate) file: usize,
    /// Files: the 1-based line number within the file (blank lines counted).
    /// Kafka: the message's offset within its partition, as Kafka numbers
    /// it (0-based; not a count of the lines handed out: a range need not
    /// start at 0, and compaction or transaction markers leave gaps).
    pub(crate) line: u64,
}

/// What was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Files read (Kafka: partitions).
    pub(crate) files: usize,
    /// Non-blank lines handed out.
    pub(crate) lines: u64,
    /// Bytes read from disk (compressed size for gzip files).
    pub(crate) bytes: u64,
}
