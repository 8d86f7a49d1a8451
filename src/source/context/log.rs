//! librdkafka's logs and client errors, in crisiswatch's log: each kind at
//! WARN once per [`REPEAT_WINDOW`] with the count of repeats since (a broker
//! that does not answer makes librdkafka repeat one error many times a
//! second), and the context of the short-lived readers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// How long a repeated Kafka client error or librdkafka warning of one kind
/// stays at DEBUG after it was last reported at WARN.
const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// Whether a warning of kind `key` is reported now: `Some(n)` with the number
/// of repeats held back since the last report, or `None` (held back: the
/// same kind was reported less than [`REPEAT_WINDOW`] ago).
pub(super) fn repeat_gate(key: &str) -> Option<u64> {
    static SEEN: std::sync::Mutex<Option<HashMap<String, (Instant, u64)>>> =
        std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match seen.get_mut(key) {
        Some((at, held)) if now.duration_since(*at) < REPEAT_WINDOW => {
            *held += 1;
            None
        }
        Some((at, held)) => {
            let n = *held;
            (*at, *held) = (now, 0);
            Some(n)
        }
        None => {
            if seen.len() >= 256 {
                seen.clear();
            }
            seen.insert(key.to_string(), (now, 0));
            Some(0)
        }
    }
}

/// Logs an error event of one of the service's Kafka clients (`client`:
/// "consumer", "dead-letter producer"). Broker connection errors are routine
/// while a broker restarts; a lasting outage shows up as a stall. The same
/// error of the same client again within [`REPEAT_WINDOW`] is logged at
/// DEBUG (librdkafka repeats it many times a second while no broker
/// answers), and the next WARN says how many were held back.
pub(crate) fn log_client_error(client: &'static str, error: &KafkaError, reason: &str) {
    let key = error
        .rdkafka_error_code()
        .map_or_else(|| error.to_string(), |c| format!("{c:?}"));
    match repeat_gate(&format!("{client}/{key}")) {
        Some(0) => tracing::warn!(client, error = %error, reason, "Kafka client error."),
        Some(n) => {
            tracing::warn!(client, error = %error, reason, repeated = n, "Kafka client error (the same error repeated since the last report).")
        }
        None => tracing::debug!(client, error = %error, reason, "Kafka client error."),
    }
}

/// The context of a bounded reader (`enable.partition.eof`: a changelog or
/// control topic read to its end): its logs as the consumer's, its client
/// errors through the repeat gate, and an end of partition — which it asked
/// for, and which librdkafka also reports as an error — at DEBUG (the default
/// context logged each at ERROR).
pub(crate) struct ReaderContext(pub(crate) &'static str);

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_partition_eof(&error) {
            tracing::debug!(client = self.0, error = %error, reason, "End of partition.");
        } else {
            log_client_error(self.0, &error, reason);
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Whether `error` is librdkafka's end-of-partition event.
fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
}

/// Routes librdkafka's log lines to `tracing`. Its errors are mostly transient
/// (a broker restarting), so they are warnings — one per kind (its facility)
/// every [`REPEAT_WINDOW`], the repeats at DEBUG; configuration warnings (a
/// consumer property on the dead-letter producer) are informational.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    let warn = matches!(
        level,
        RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
    );
    if warn && fac != "CONFWARN" {
        match repeat_gate(&format!("log/{fac}")) {
            Some(0) => tracing::warn!(target: "librdkafka", fac, "{message}"),
            Some(n) => tracing::warn!(target: "librdkafka", fac, repeated = n, "{message}"),
            None => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
        return;
    }
    match level {
        _ if fac == "CONFWARN" => tracing::info!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}
