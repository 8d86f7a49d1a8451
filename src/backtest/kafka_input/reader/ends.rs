//! How a partition's read ends: the broker's end of partition, settled
//! against a re-read high watermark, and the stall and past-the-end checks
//! of the partitions the merge waits on (rules and reasons: the `kafka_input`
//! module documentation).

use std::time::Instant;

use rdkafka::consumer::Consumer;

use super::*;

impl Reader<'_> {
    /// The broker reported the end of partition `i` at the current position.
    pub(super) fn end_of_partition(&mut self, i: usize) -> Result<(), KafkaInputError> {
        let now = Instant::now();
        let part = &mut self.parts[i];
        part.last_activity = now;
        if part.end.is_some() {
            return Ok(());
        }
        let high = self.high_watermark(i)?;
        let part = &mut self.parts[i];
        let next = part.next;
        if high <= next {
            let why = if part.to.is_some() {
                "partition ended before --to-offset"
            } else {
                "end of partition"
            };
            self.finish(i, next, why);
            return Ok(());
        }
        // The watermark says there is more: new messages, or offsets that
        // carry none (transaction markers, compaction). Settle before deciding.
        part.tail_rounds += 1;
        part.tail = Some(Tail { high, since: now });
        if part.tail_rounds > MAX_TAIL_ROUNDS {
            self.finish(i, next, "still growing; stopping");
        }
        Ok(())
    }

    /// Stalls and settling partitions.
    pub(super) fn check_parts(&mut self) -> Result<(), KafkaInputError> {
        let now = Instant::now();
        let timeout = self.history.range.timeout;
        for i in 0..self.parts.len() {
            let part = &self.parts[i];
            if !part.starved() {
                continue;
            }
            if let Some(tail) = part.tail {
                if now.saturating_duration_since(tail.since) >= TAIL_SETTLE {
                    let high = self.high_watermark(i)?;
                    let next = self.parts[i].next;
                    if high <= next || high == tail.high {
                        self.finish(i, next, "end of partition (high watermark settled)");
                    } else {
                        // The watermark moved but nothing came (e.g. only
                        // aborted transactions): a round like an end reached
                        // while growing, so this cannot go on for ever.
                        let part = &mut self.parts[i];
                        part.tail_rounds += 1;
                        part.tail = Some(Tail { high, since: now });
                        if part.tail_rounds > MAX_TAIL_ROUNDS {
                            self.finish(i, next, "still growing; stopping");
                        }
                    }
                }
                continue;
            }
            let idle = now.saturating_duration_since(part.last_activity);
            let grace = PAST_END_GRACE.min(timeout);
            if part.start > part.high && part.next == part.start && idle >= grace {
                // Started beyond the watermark and nothing came, not even the
                // end of the partition: past the end, unless the watermark
                // merely lagged (then wait as for any partition).
                let high = self.high_watermark(i)?;
                let part = &mut self.parts[i];
                if high < part.next {
                    return Err(KafkaInputError::PastEnd {
                        topic: self.topics[part.topic].name.clone(),
                        partition: part.partition,
                        offset: part.next,
                        high,
                        waited: human(grace),
                    });
                }
                part.high = high;
                continue;
            }
            if idle > timeout {
                let topic = &self.topics[part.topic];
                // A broker that answers but has nothing at the offset (Tansu,
                // for an offset past the end; Apache Kafka says out of range).
                let hint = match topic.consumer.fetch_watermarks(
                    &topic.name,
                    part.partition,
                    HINT_TIMEOUT,
                ) {
                    Ok((_, high)) if high < part.next => format!(
                        " (past the partition's end: its high watermark is {high}; check --from-offset)"
                    ),
                    Ok(_) => " (the broker answers but sends nothing)".to_string(),
                    Err(_) => " (the broker is unreachable or does not answer)".to_string(),
                };
                return Err(KafkaInputError::Stalled {
                    topic: topic.name.clone(),
                    partition: part.partition,
                    offset: part.next,
                    timeout: human(timeout),
                    hint,
                    last: topic.consumer.context().last(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn high_watermark(&self, i: usize) -> Result<i64, KafkaInputError> {
        let part = &self.parts[i];
        let topic = &self.topics[part.topic];
        let timeout = self.history.range.timeout;
        topic
            .consumer
            .fetch_watermarks(&topic.name, part.partition, timeout)
            .map(|(_, high)| high)
            .map_err(|source| KafkaInputError::Watermarks {
                topic: topic.name.clone(),
                partition: part.partition,
                timeout: human(timeout),
                error: Box::new(source),
                last: topic.consumer.context().last(),
            })
    }
}
