//! Test-side Kafka clients (rdkafka): create topics, produce with known
//! offsets, read committed offsets, read a topic back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

/// Where a produced message landed.
pub type Pos = (String, i32, i64);

/// Extra client properties per bootstrap address (the TLS test registers
/// `security.protocol` and its CA here, so every helper speaks TLS to it).
static PROPS: Mutex<BTreeMap<String, Vec<(String, String)>>> = Mutex::new(BTreeMap::new());

/// Makes every helper client of `bootstrap` use these properties.
pub fn register_props(bootstrap: &str, props: &[(&str, &str)]) {
    let props = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PROPS.lock().unwrap().insert(bootstrap.to_string(), props);
}

/// A client configuration for `bootstrap`, with its registered properties.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in PROPS.lock().unwrap().get(bootstrap).into_iter().flatten() {
        c.set(k, v);
    }
    c
}

/// Creates topics (name, partitions) and waits until their metadata shows every partition.
pub fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .expect("create_topics request");
    for r in res {
        if let Err((t, e)) = r {
            panic!("cannot create topic {t}: {e}");
        }
    }
    let probe: BaseConsumer = client_config(bootstrap).create().expect("metadata client");
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, parts) in topics {
        loop {
            let seen = probe
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
                .unwrap_or(0);
            if seen == *parts as usize {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} has {seen} partitions, not {parts}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One delivery report: where the message landed, or why it failed.
type Report = Option<Result<Pos, String>>;

/// Delivery reports by the index of the message in the produced slice.
struct Deliveries(Arc<Mutex<Vec<Report>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, i: usize) {
        let v = match r {
            Ok(m) => Ok((m.topic().to_string(), m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap()[i] = Some(v);
    }
}

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Out {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// No value at all (a tombstone); `payload` is then ignored.
    pub null: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The Kafka message timestamp (CreateTime, ms); `None`: the producer's clock.
    pub timestamp: Option<i64>,
}

impl Out {
    pub fn new(topic: &str, partition: i32, payload: impl Into<Vec<u8>>) -> Out {
        Out {
            topic: topic.to_string(),
            partition,
            key: None,
            payload: payload.into(),
            null: false,
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

/// Produces every message (waiting up to `timeout` for delivery, e.g. across a
/// paused broker) and returns where each landed, in the order of `msgs`.
pub fn produce(bootstrap: &str, msgs: &[Out], timeout: Duration) -> Vec<Pos> {
    produce_compressed(bootstrap, msgs, timeout, "none")
}

/// [`produce`] with the producer's `compression.type` (`none`, `gzip`,
/// `snappy`, `lz4`, `zstd`): each batch is compressed so.
#[allow(dead_code)]
pub fn produce_compressed(
    bootstrap: &str,
    msgs: &[Out],
    timeout: Duration,
    codec: &str,
) -> Vec<Pos> {
    let got = Arc::new(Mutex::new(vec![None; msgs.len()]));
    let producer: BaseProducer<Deliveries> = client_config(bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set("message.max.bytes", "2000000")
        .create_with_context(Deliveries(Arc::clone(&got)))
        .expect("producer");
    for (i, m) in msgs.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec = BaseRecord::with_opaque_to(&m.topic, i)
            .partition(m.partition)
            .headers(headers);
        if !m.null {
            rec = rec.payload(&m.payload);
        }
        if let Some(k) = &m.key {
            rec = rec.key(k);
        }
        if let Some(ts) = m.timestamp {
            rec = rec.timestamp(ts);
        }
        let mut rec = Some(rec);
        while let Some(r) = rec.take() {
            if let Err((e, r)) = producer.send(r) {
                // Queue full: serve deliveries, then retry.
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "produce: {e}"
                );
                producer.poll(Duration::from_millis(10));
                rec = Some(r);
            }
        }
    }
    producer.flush(timeout).expect("flush produced messages");
    let got = got.lock().unwrap().clone();
    got.into_iter()
        .map(|r| match r {
            Some(Ok(p)) => p,
            Some(Err(e)) => panic!("delivery failed: {e}"),
            None => panic!("a message got no delivery report"),
        })
        .collect()
}

/// The group's committed offset per (topic, partition); absent when none.
pub fn committed(
    bootstrap: &str,
    group: &str,
    topics: &[(&str, i32)],
) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, n) in topics {
        for p in 0..*n {
            tpl.add_partition(t, p);
        }
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// Reads `n` messages from every partition of `topic` from the beginning
/// (no consumer group), within `deadline`.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    deadline: Duration,
) -> Vec<OwnedMessage> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", "crisiswatch-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    while out.len() < n && Instant::now() < end {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            if seen.insert((m.partition(), m.offset())) {
                out.push(m.detach());
            }
        }
    }
    out
}
