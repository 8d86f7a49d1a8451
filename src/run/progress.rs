//! Per-partition summary of one batch in the engine stage.
//!
//! A batch from the consumer usually spans one or two partitions; the stage
//! folds its messages into one entry per partition (newest event time, last
//! offset) so the watermarks and the offset tracker are updated once per
//! batch, not once per message.

use smallvec::SmallVec;

use crate::source::Partition;

/// What one batch did to one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartProgress {
    /// The partition.
    pub(crate) at: Partition,
    /// Newest valid event time.
    pub(crate) max_ts: Option<i64>,
    /// Offset of the partition's last message in the batch.
    pub(crate) last_offset: i64,
}

/// Per-partition summary of a batch (usually one or two partitions), so the
/// watermarks and the offset tracker are updated once per batch, not per message.
#[derive(Debug, Default)]
pub(crate) struct BatchProgress {
    /// The partitions, in order of first appearance.
    pub(crate) parts: SmallVec<[PartProgress; 4]>,
}

impl BatchProgress {
    /// The partition's entry, with `offset` as its latest message.
    pub(crate) fn partition(&mut self, at: Partition, offset: i64) -> &mut PartProgress {
        let i = match self.parts.iter().position(|p| p.at == at) {
            Some(i) => i,
            None => {
                self.parts.push(PartProgress {
                    at,
                    max_ts: None,
                    last_offset: offset,
                });
                self.parts.len() - 1
            }
        };
        let p = &mut self.parts[i];
        p.last_offset = p.last_offset.max(offset);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_messages_per_partition() {
        let p = |partition| Partition {
            topic: 0,
            partition,
        };
        let mut b = BatchProgress::default();
        b.partition(p(1), 10).max_ts = Some(5);
        b.partition(p(2), 3);
        let e = b.partition(p(1), 11);
        e.max_ts = e.max_ts.max(Some(4));
        assert_eq!(b.parts.len(), 2);
        assert_eq!((b.parts[0].last_offset, b.parts[0].max_ts), (11, Some(5)));
        assert_eq!((b.parts[1].last_offset, b.parts[1].max_ts), (3, None));
    }
}
