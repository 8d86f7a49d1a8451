//! Notifications that move with their incident between instances
//! (`sources.kafka.scale_out`). An incident partition's checkpoint carries
//! the notifications still queued for its incidents ([`QueuedRow`]); the
//! partition's next owner queues them first, ahead of anything it adds, and
//! the instance that gave the partition up marks its own copies handed
//! (`superseded`, with [`HANDED`] as the reason) so it never sends them —
//! not after a restart, not by `outbox deliver` — where they would reach the
//! receiver after the new owner's later notifications (a resolve before the
//! update it follows). A handed row comes back to life when this instance
//! owns the partition again and queues the same notification.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{Outbox, OutboxError, Tx};
use crate::alert::Labels;

/// The reason a handed row keeps (`outbox list` shows it).
pub(crate) const HANDED: &str =
    "handed with its incident to the owner of its incident partition (sources.kafka.scale_out)";

/// The rows of a status with their incidents, oldest first: from the
/// covering index alone (a row's status comes after its body, so reading
/// the table would walk every large body; `queue::tests::plans`).
pub(super) const IDS_OF_STATUS: &str =
    "SELECT id, incident FROM notifications INDEXED BY notifications_pending
     WHERE status = ?1 ORDER BY id";

/// A queued notification as a partition checkpoint carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct QueuedRow {
    /// The receiver's name.
    pub(crate) receiver: String,
    /// The incident's key.
    pub(crate) incident: String,
    /// The notification's number within the incident.
    pub(crate) seq: u32,
    /// Open, update, acknowledge or resolve.
    pub(crate) action: String,
    /// The notification (JSON), as the outbox stores it.
    pub(crate) body: String,
    /// When it was first queued (ms): `max_age` counts from here.
    pub(crate) created_ms: i64,
    /// Attempts so far, and the last one's error.
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
}

/// Where a stored notification's incident belongs: the fields of its body
/// that decide the incident partition.
#[derive(Deserialize)]
struct Place {
    route: String,
    labels: Labels,
}

/// A body whose place cannot be read (damaged) stays where it is.
fn place(body: &str) -> Option<Place> {
    serde_json::from_str(body).ok()
}

impl Outbox {
    /// Marks everything queued handed (an instance of a scaled group that
    /// owns no incident partition yet); returns how many.
    pub(crate) fn hand_off_all(&self, now: i64) -> Result<usize, OutboxError> {
        self.transaction(now, |tx| tx.hand_off_where(|_, _| true))
    }

    /// How many times rows were handed away: a delivery worker that read rows
    /// before a change re-checks each before sending it.
    pub(crate) fn handed_generation(&self) -> u64 {
        self.handed.load(Ordering::Acquire)
    }

    /// Whether row `id` is still waiting to be sent.
    pub(crate) fn still_pending(&self, id: i64) -> Result<bool, OutboxError> {
        let conn = self.conn()?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM notifications WHERE id = ?1 AND status = 'pending'",
            params![id],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}

impl Tx<'_> {
    /// The ids of the rows of `status` (oldest first), each with the class
    /// `classify` gives its incident by route and grouping labels (`None`:
    /// left out). Reads the index for the ids and one body per incident (an
    /// incident's rows share its place), never every row's body: a receiver
    /// down for hours leaves thousands queued.
    pub(crate) fn ids_by(
        &self,
        status: &str,
        classify: impl Fn(&str, &Labels) -> Option<u32>,
    ) -> Result<Vec<(i64, u32)>, OutboxError> {
        let rows: Vec<(i64, String)> = {
            let mut st = self.tx.prepare_cached(IDS_OF_STATUS)?;
            let rows = st.query_map(params![status], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut classes: HashMap<&str, Option<u32>> = HashMap::new();
        let mut ids = Vec::new();
        for (id, incident) in &rows {
            let class = match classes.get(incident.as_str()) {
                Some(&class) => class,
                None => {
                    let body: String = self.tx.query_row(
                        "SELECT body FROM notifications WHERE id = ?1",
                        params![id],
                        |r| r.get(0),
                    )?;
                    let class = place(&body).and_then(|p| classify(&p.route, &p.labels));
                    classes.insert(incident, class);
                    class
                }
            };
            if let Some(c) = class {
                ids.push((*id, c));
            }
        }
        Ok(ids)
    }

    fn ids_where(
        &self,
        status: &str,
        pick: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Vec<i64>, OutboxError> {
        let ids = self.ids_by(status, |route, labels| pick(route, labels).then_some(0))?;
        Ok(ids.into_iter().map(|(id, _)| id).collect())
    }

    /// The rows of `ids` still queued, in that order.
    pub(crate) fn queued_rows(&self, ids: &[i64]) -> Result<Vec<QueuedRow>, OutboxError> {
        let mut st = self.tx.prepare_cached(
            "SELECT receiver, incident, seq, action, body, created_ms, attempts, last_error
             FROM notifications WHERE id = ?1 AND status = 'pending'",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = st
                .query_row(params![id], |r| {
                    Ok(QueuedRow {
                        receiver: r.get(0)?,
                        incident: r.get(1)?,
                        seq: r.get(2)?,
                        action: r.get(3)?,
                        body: r.get(4)?,
                        created_ms: r.get(5)?,
                        attempts: r.get(6)?,
                        last_error: r.get(7)?,
                    })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    /// The queued notifications whose incident `belongs` picks (by route and
    /// grouping labels), oldest first.
    #[cfg(test)]
    pub(crate) fn queued_where(
        &self,
        belongs: impl Fn(&str, &Labels) -> bool,
    ) -> Result<Vec<QueuedRow>, OutboxError> {
        let ids = self.ids_where("pending", belongs)?;
        self.queued_rows(&ids)
    }

    /// Marks the queued rows `ids` handed (never sent from here); returns how many.
    pub(crate) fn hand_off_ids(&self, ids: &[i64]) -> Result<usize, OutboxError> {
        let mut n = 0;
        for id in ids {
            n += self.tx.execute(
                "UPDATE notifications SET status = 'superseded', done_ms = ?2, last_error = ?3
                 WHERE id = ?1 AND status = 'pending'",
                params![id, self.now, HANDED],
            )?;
        }
        if n > 0 {
            self.handed.fetch_add(1, Ordering::AcqRel);
        }
        Ok(n)
    }

    /// Marks the queued notifications whose incident `leaves` picks handed
    /// (never sent from here); returns how many.
    pub(crate) fn hand_off_where(
        &self,
        leaves: impl Fn(&str, &Labels) -> bool,
    ) -> Result<usize, OutboxError> {
        let ids = self.ids_where("pending", leaves)?;
        self.hand_off_ids(&ids)
    }

    /// Queues notifications handed over with their incidents, in their
    /// order, ahead of anything queued for those incidents later; returns how
    /// many were queued (one already stored, other than as handed, is kept).
    pub(crate) fn take_over(&self, rows: &[QueuedRow]) -> Result<usize, OutboxError> {
        let mut queued = 0;
        for r in rows {
            self.drop_handed(&r.receiver, &r.incident, r.seq)?;
            queued += self.tx.execute(
                "INSERT OR IGNORE INTO notifications (receiver, incident, seq, action, body, status, created_ms, next_attempt_ms, attempts, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9)",
                params![r.receiver, r.incident, r.seq, r.action, r.body, r.created_ms, self.now, r.attempts, r.last_error],
            )?;
        }
        Ok(queued)
    }

    /// Makes this instance's handed rows of the incidents `belongs` picks
    /// queued again (a checkpoint written before checkpoints carried queued
    /// notifications: this outbox's copies are the only ones); returns how many.
    pub(crate) fn revive_handed_where(
        &self,
        belongs: impl Fn(&str, &Labels) -> bool,
    ) -> Result<usize, OutboxError> {
        let mut ids = self.ids_where("superseded", belongs)?;
        // Of those, the handed ones (not dead letters an operator's retry
        // superseded).
        let mut st = self.tx.prepare_cached(
            "SELECT COALESCE(last_error = ?2, 0) FROM notifications WHERE id = ?1",
        )?;
        let mut kept = Vec::with_capacity(ids.len());
        for id in ids.drain(..) {
            if st.query_row(params![id, HANDED], |r| r.get::<_, bool>(0))? {
                kept.push(id);
            }
        }
        let ids = kept;
        for id in &ids {
            self.tx.execute(
                "UPDATE notifications SET status = 'pending', done_ms = NULL, last_error = NULL,
                   next_attempt_ms = ?2 WHERE id = ?1",
                params![id, self.now],
            )?;
        }
        Ok(ids.len())
    }

    /// Deletes a handed row of (`receiver`, `incident`, `seq`), so the same
    /// notification can be queued again behind what is queued now; `true`
    /// if there was one.
    pub(crate) fn drop_handed(
        &self,
        receiver: &str,
        incident: &str,
        seq: u32,
    ) -> Result<bool, OutboxError> {
        let n = self.tx.execute(
            "DELETE FROM notifications WHERE receiver = ?1 AND incident = ?2 AND seq = ?3
               AND status = 'superseded' AND last_error = ?4",
            params![receiver, incident, seq, HANDED],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;
    use crate::incident::model::{Action, Notification, Reason};
    use crate::incident::outbox::Status;

    fn note(product: &str, seq: u32, action: Action) -> Notification {
        Notification {
            dedup_key: format!("product/product={product}/1000"),
            action,
            seq,
            reason: Reason::Opened,
            route: "product".into(),
            labels: vec![("product".into(), product.into())],
            severity: Severity::Warning,
            at: 2000 + i64::from(seq),
            started_at: 1000,
            resolved_at: None,
            alerts: Vec::new(),
            primary: 0,
            summary: format!("{} {seq}", action.as_str()),
            ack: None,
            since: None,
        }
    }

    fn is_p1(_: &str, labels: &Labels) -> bool {
        labels.iter().any(|(_, v)| v == "p1")
    }

    /// What is due for receiver `r`, each incident's rows in the order sent.
    fn sent_order(ob: &Outbox, r: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        loop {
            let rows = ob.due(r, i64::MAX / 2, 100).unwrap();
            if rows.is_empty() {
                return out;
            }
            for row in rows {
                out.push((row.incident.clone(), row.seq));
                ob.finish(row.id, Status::Delivered, 1, None, 0).unwrap();
            }
        }
    }

    /// A partition's queued rows leave one outbox (never sent from there,
    /// kept as `superseded` with the reason) and are queued, in order and
    /// first, in the next owner's; a row delivered there already is not
    /// queued again.
    #[test]
    fn queued_rows_move_to_the_next_owner_in_order() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            Outbox::open(da.path()).unwrap(),
            Outbox::open(db.path()).unwrap(),
        );
        a.transaction(5, |tx| {
            for seq in 1..=3 {
                tx.enqueue("hook", &note("p1", seq, Action::Update), Status::Pending)?;
                tx.enqueue("hook", &note("p2", seq, Action::Update), Status::Pending)?;
            }
            Ok(())
        })
        .unwrap();
        let moving = a.transaction(6, |tx| tx.queued_where(is_p1)).unwrap();
        assert_eq!(
            moving.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(moving
            .iter()
            .all(|r| r.incident.contains("p1") && r.created_ms == 5));
        let before = a.handed_generation();
        assert_eq!(a.transaction(7, |tx| tx.hand_off_where(is_p1)).unwrap(), 3);
        assert!(a.handed_generation() > before);
        // Only p2's rows are sent from here; p1's keep the reason.
        assert_eq!(
            sent_order(&a, "hook"),
            (1..=3)
                .map(|s| ("product/product=p2/1000".to_string(), s))
                .collect::<Vec<_>>()
        );
        let kept = a.list(Some(Status::Superseded), None, 10).unwrap();
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().all(|r| r.last_error.as_deref() == Some(HANDED)));
        // The next owner had delivered seq 1 itself (a checkpoint older than
        // its delivery): 2 and 3 are queued, before what it queues next.
        b.transaction(8, |tx| {
            tx.enqueue("hook", &note("p1", 1, Action::Open), Status::Pending)
        })
        .unwrap();
        sent_order(&b, "hook");
        assert_eq!(b.transaction(9, |tx| tx.take_over(&moving)).unwrap(), 2);
        b.transaction(10, |tx| {
            tx.enqueue("hook", &note("p1", 4, Action::Resolve), Status::Pending)
        })
        .unwrap();
        let p1 = "product/product=p1/1000".to_string();
        assert_eq!(
            sent_order(&b, "hook"),
            vec![(p1.clone(), 2), (p1.clone(), 3), (p1, 4)]
        );
    }

    /// An outbox that owns a partition again queues its handed rows anew
    /// behind what it queues first: taken over from a checkpoint, or queued
    /// again by re-applied transitions; and, from a checkpoint that could
    /// not carry them, its own handed rows come back.
    #[test]
    fn handed_rows_come_back_in_order_when_the_partition_does() {
        let d = tempfile::tempdir().unwrap();
        let ob = Outbox::open(d.path()).unwrap();
        ob.transaction(5, |tx| {
            for seq in 1..=3 {
                tx.enqueue("hook", &note("p1", seq, Action::Update), Status::Pending)?;
            }
            Ok(())
        })
        .unwrap();
        let checkpoint: Vec<QueuedRow> = ob
            .transaction(6, |tx| tx.queued_where(is_p1))
            .unwrap()
            .into_iter()
            .take(2)
            .collect();
        ob.transaction(7, |tx| tx.hand_off_where(|_, _| true))
            .unwrap();
        assert!(ob.due("hook", i64::MAX / 2, 10).unwrap().is_empty());
        // Back: seq 1 and 2 from the checkpoint, 3 queued again after it.
        assert_eq!(
            ob.transaction(8, |tx| tx.take_over(&checkpoint)).unwrap(),
            2
        );
        let again = ob
            .transaction(9, |tx| {
                tx.enqueue("hook", &note("p1", 3, Action::Update), Status::Pending)
            })
            .unwrap();
        assert!(again, "a handed row is queued again");
        let p1 = "product/product=p1/1000".to_string();
        assert_eq!(
            sent_order(&ob, "hook"),
            vec![(p1.clone(), 1), (p1.clone(), 2), (p1.clone(), 3)]
        );
        // Nothing queued twice.
        assert!(!ob
            .transaction(10, |tx| {
                tx.enqueue("hook", &note("p1", 3, Action::Update), Status::Pending)
            })
            .unwrap());
        // A checkpoint of an older build: the outbox's own copies return.
        ob.transaction(11, |tx| {
            tx.enqueue("hook", &note("p1", 4, Action::Resolve), Status::Pending)
        })
        .unwrap();
        ob.transaction(12, |tx| tx.hand_off_where(|_, _| true))
            .unwrap();
        assert_eq!(
            ob.transaction(13, |tx| tx.revive_handed_where(is_p1))
                .unwrap(),
            1
        );
        assert_eq!(sent_order(&ob, "hook"), vec![(p1, 4)]);
        assert!(ob.still_pending(1).is_ok_and(|p| !p));
    }

    /// A row handed away while its request was in flight: a failed attempt
    /// leaves the mark (the row comes back whole with its partition); a
    /// delivery is recorded as one.
    #[test]
    fn an_attempt_in_flight_at_the_hand_off_keeps_the_mark() {
        let d = tempfile::tempdir().unwrap();
        let ob = Outbox::open(d.path()).unwrap();
        ob.transaction(5, |tx| {
            tx.enqueue("hook", &note("p1", 1, Action::Open), Status::Pending)?;
            tx.enqueue("hook", &note("p2", 1, Action::Open), Status::Pending)
        })
        .unwrap();
        let in_flight = ob.due("hook", 10, 10).unwrap();
        assert_eq!(in_flight.len(), 2);
        let carried = ob
            .transaction(6, |tx| tx.queued_where(|_, _| true))
            .unwrap();
        ob.hand_off_all(6).unwrap();
        // p1's attempt fails, p2's is delivered, after the hand-off.
        ob.mark_retry(in_flight[0].id, 1, 20, "HTTP 500").unwrap();
        ob.finish(in_flight[1].id, Status::Delivered, 1, None, 7)
            .unwrap();
        let kept = ob.list(Some(Status::Superseded), None, 10).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].last_error.as_deref(), Some(HANDED));
        assert_eq!(ob.count(Some(Status::Delivered), None).unwrap(), 1);
        // The partition comes back: p1's open is queued again, p2's is not
        // sent twice from here.
        assert_eq!(ob.transaction(8, |tx| tx.take_over(&carried)).unwrap(), 1);
        let due = ob.due("hook", i64::MAX / 2, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert!(due[0].incident.contains("p1"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// The owner queues incident `0`'s next notification.
        Queue(usize),
        /// The owner sends up to this many due rows.
        Deliver(usize),
        /// A periodic checkpoint of the partition.
        Checkpoint,
        /// A revoke or stop: an exact checkpoint, the other outbox owns next.
        Hand,
        /// A `kill -9`: the other outbox owns next from the last checkpoint,
        /// re-queues what came after it; the dead one hands everything off
        /// when it starts again.
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0usize..2).prop_map(Op::Queue),
            3 => (1usize..4).prop_map(Op::Deliver),
            1 => Just(Op::Checkpoint),
            1 => Just(Op::Hand),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any interleaving of queueing, sending, checkpoints, hand-overs
        /// and crashes between two outboxes: every notification reaches the
        /// receiver; the first arrivals of each incident come in `seq`
        /// order; without a crash each arrives once; a repeat is only of
        /// one sent before a crash.
        #[test]
        fn every_notification_arrives_in_order_whoever_owns_it(ops in proptest::collection::vec(op(), 1..60)) {
            let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
            let outs = [Outbox::open(dirs[0].path()).unwrap(), Outbox::open(dirs[1].path()).unwrap()];
            let products = ["p1", "p2"];
            let mut owner = 0usize;
            let mut next = [1u32; 2];
            let mut saved: (Vec<QueuedRow>, [u32; 2]) = (Vec::new(), [1, 1]);
            let mut got: Vec<(usize, u32)> = Vec::new();
            let mut crashed_after = 0usize;
            let mut now = 10i64;
            let deliver = |ob: &Outbox, n: usize, got: &mut Vec<(usize, u32)>| {
                for row in ob.due("hook", i64::MAX / 2, n).unwrap() {
                    let i = usize::from(row.incident.contains("p2"));
                    got.push((i, row.seq));
                    ob.finish(row.id, Status::Delivered, 1, None, 0).unwrap();
                }
            };
            for op in ops {
                now += 1;
                let ob = &outs[owner];
                match op {
                    Op::Queue(i) => {
                        ob.transaction(now, |tx| tx.enqueue("hook", &note(products[i], next[i], Action::Update), Status::Pending)).unwrap();
                        next[i] += 1;
                    }
                    Op::Deliver(n) => deliver(ob, n, &mut got),
                    Op::Checkpoint => {
                        saved = (ob.transaction(now, |tx| tx.queued_where(|_, _| true)).unwrap(), next);
                    }
                    Op::Hand => {
                        let cp = ob.transaction(now, |tx| tx.queued_where(|_, _| true)).unwrap();
                        ob.transaction(now, |tx| tx.hand_off_where(|_, _| true)).unwrap();
                        owner = 1 - owner;
                        outs[owner].transaction(now, |tx| tx.take_over(&cp)).unwrap();
                        saved = (cp, next);
                    }
                    Op::Crash => {
                        ob.transaction(now, |tx| tx.hand_off_where(|_, _| true)).unwrap();
                        owner = 1 - owner;
                        let nb = &outs[owner];
                        nb.transaction(now, |tx| tx.take_over(&saved.0)).unwrap();
                        for (i, p) in products.iter().enumerate() {
                            for seq in saved.1[i]..next[i] {
                                nb.transaction(now, |tx| tx.enqueue("hook", &note(p, seq, Action::Update), Status::Pending)).unwrap();
                            }
                        }
                        crashed_after = got.len();
                    }
                }
            }
            // Everything left (each call sends each incident's oldest row).
            for _ in 0..64 {
                deliver(&outs[owner], 1000, &mut got);
            }
            // The other outbox holds nothing to send: all handed.
            proptest::prop_assert!(outs[1 - owner].due("hook", i64::MAX / 2, 10).unwrap().is_empty());
            for (i, &last) in next.iter().enumerate() {
                let arrivals: Vec<u32> = got.iter().filter(|g| g.0 == i).map(|g| g.1).collect();
                let mut firsts = Vec::new();
                for (k, &seq) in arrivals.iter().enumerate() {
                    if arrivals[..k].contains(&seq) {
                        // A repeat: only of one sent before a crash.
                        let at = got.iter().position(|g| *g == (i, seq)).unwrap();
                        proptest::prop_assert!(at < crashed_after, "{i}: {seq} again in {arrivals:?}");
                    } else {
                        firsts.push(seq);
                    }
                }
                let all: Vec<u32> = (1..last).collect();
                proptest::prop_assert_eq!(&firsts, &all, "incident {} arrivals {:?}", i, arrivals);
            }
        }
    }
}
