//! `--applied-log FILE`: a debugging record of every Kafka message whose event
//! was applied to the engine, as `topic,partition,offset` lines.
//!
//! Lines of a batch are flushed before the batch's offsets become committable,
//! so every committed offset is in the file: tests compare it with what was
//! produced (no valid event lost) and with the committed offsets (a graceful
//! shutdown commits exactly what was applied). After a restart or a rebalance
//! a message may appear twice: delivery is at least once.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

/// The open log.
#[derive(Debug)]
pub(crate) struct AppliedLog {
    out: BufWriter<File>,
}

impl AppliedLog {
    /// Opens `path` for appending (created if missing).
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AppliedLog {
            out: BufWriter::with_capacity(1 << 16, f),
        })
    }

    /// Records one applied message.
    pub(crate) fn record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> std::io::Result<()> {
        writeln!(self.out, "{topic},{partition},{offset}")
    }

    /// Writes the buffered lines to the file.
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
