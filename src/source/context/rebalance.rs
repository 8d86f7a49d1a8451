//! The input consumer's rebalances: the partitions revoked are drained and
//! committed before they go, those assigned are tracked from their first
//! offset (`pre_rebalance`, `post_rebalance`), and the assignment itself is
//! made here rather than by rdkafka's default `rebalance`.
//!
//! The default asks librdkafka for the group's rebalance protocol on every
//! rebalance (`rd_kafka_rebalance_protocol`), and that call can block for
//! ever when the rebalance is the one the consumer's close triggers
//! (librdkafka #4041, rust-rdkafka #509): a stopping instance then hung in
//! `BaseConsumer::drop` past its `shutdown_timeout`, holding its partitions
//! while the group waited for it. The protocol is asked once, at the first
//! rebalance of a running consumer, and kept; a consumer that closes before
//! it ever joined has nothing assigned, and unassigns eagerly.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

use super::SourceContext;

impl SourceContext {
    /// Whether the group rebalances cooperatively: asked of librdkafka once,
    /// never while the consumer stops.
    fn cooperative(&self, consumer: &BaseConsumer<Self>) -> bool {
        if let Some(&c) = self.cooperative.get() {
            return c;
        }
        if self
            .shared()
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return false;
        }
        let c = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => true,
            RebalanceProtocol::Eager => false,
            // Not joined yet: ask again at the next rebalance.
            RebalanceProtocol::None => return false,
        };
        *self.cooperative.get_or_init(|| c)
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let tpl: &TopicPartitionList = tpl;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            _ => Rebalance::Error(KafkaError::Rebalance(err.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        // As rdkafka's default does, without asking the protocol again.
        let cooperative = self.cooperative(consumer);
        let done = match (err, cooperative) {
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => {
                consumer.incremental_assign(tpl)
            }
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => consumer.assign(tpl),
            (_, true) => consumer.incremental_unassign(tpl),
            (_, false) => consumer.unassign(),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, partitions = tpl.count(), "Cannot apply the consumer group's new assignment.");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.on_revoke(consumer, self.partitions(tpl)),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "Consumer group rebalance failed."),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.on_assign(self.partitions(tpl));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let m = &self.shared.metrics;
        match result {
            Ok(()) => m.commits.inc(),
            // Nothing was stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                m.commit_failures.inc();
                tracing::warn!(error = %e, partitions = offsets.count(), "Offset commit failed; retried at the next commit.");
            }
        }
    }
}
