//! Tests of the notifications' hand-over between outboxes.
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
    assert_eq!(
        a.transaction(7, |tx| tx.hand_off_where(is_p1))
            .unwrap()
            .total(),
        3
    );
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
    assert_eq!(
        b.transaction(9, |tx| tx.take_over(&moving))
            .unwrap()
            .total(),
        2
    );
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

/// Taken over with its incident's resolve queued behind it, an update is
/// not sent (the previous owner may have sent it and the resolve after the
/// checkpoint; a PagerDuty `trigger` repeated after the resolve re-opens
/// the incident): the resolve is, and the open; an incident without a
/// queued resolve keeps its updates; another receiver's resolve does not
/// count.
#[test]
fn an_update_taken_over_before_its_incidents_resolve_is_not_sent() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Outbox::open(da.path()).unwrap(),
        Outbox::open(db.path()).unwrap(),
    );
    a.transaction(5, |tx| {
        tx.enqueue("hook", &note("p1", 1, Action::Open), Status::Pending)?;
        tx.enqueue("hook", &note("p1", 2, Action::Update), Status::Pending)?;
        tx.enqueue("hook", &note("p1", 3, Action::Update), Status::Pending)?;
        tx.enqueue("hook", &note("p1", 4, Action::Resolve), Status::Pending)?;
        tx.enqueue("hook", &note("p2", 2, Action::Update), Status::Pending)?;
        tx.enqueue("pager", &note("p2", 3, Action::Update), Status::Pending)?;
        tx.enqueue("hook", &note("p2", 4, Action::Resolve), Status::Pending)?;
        tx.enqueue("hook", &note("p3", 5, Action::Update), Status::Pending)
    })
    .unwrap();
    let moving = a.transaction(6, |tx| tx.queued_where(|_, _| true)).unwrap();
    a.transaction(7, |tx| tx.hand_off_where(|_, _| true))
        .unwrap();
    b.transaction(8, |tx| tx.take_over(&moving)).unwrap();
    let key = |p: &str| format!("product/product={p}/1000");
    let mut hook = sent_order(&b, "hook");
    hook.sort();
    assert_eq!(
        hook,
        vec![
            (key("p1"), 1),
            (key("p1"), 4),
            (key("p2"), 4),
            (key("p3"), 5)
        ]
    );
    assert_eq!(sent_order(&b, "pager"), vec![(key("p2"), 3)]);
    let skipped = b.list(Some(Status::Superseded), None, 10).unwrap();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(skipped
        .iter()
        .all(|r| r.last_error.as_deref() == Some(RESOLVED_BEHIND)));
    // Taken over again (the same checkpoint, another hand-back): still not sent.
    b.transaction(9, |tx| tx.take_over(&moving)).unwrap();
    assert!(sent_order(&b, "hook").is_empty());
}

/// Handed and taken-over rows are counted per receiver (the metrics
/// `crisiswatch_notifications_total{outcome="handed"}` and
/// `crisiswatch_notifications_taken_over_total`).
#[test]
fn moved_rows_are_counted_per_receiver() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Outbox::open(da.path()).unwrap(),
        Outbox::open(db.path()).unwrap(),
    );
    a.transaction(5, |tx| {
        for seq in 1..=3 {
            tx.enqueue("hook", &note("p1", seq, Action::Update), Status::Pending)?;
        }
        tx.enqueue("am", &note("p1", 1, Action::Open), Status::Pending)?;
        tx.enqueue("am", &note("p2", 1, Action::Open), Status::Pending)?;
        Ok(())
    })
    .unwrap();
    let moving = a.transaction(6, |tx| tx.queued_where(is_p1)).unwrap();
    let handed = a.transaction(7, |tx| tx.hand_off_where(is_p1)).unwrap();
    assert_eq!(
        handed.per_receiver().collect::<Vec<_>>(),
        vec![("am", 1), ("hook", 3)]
    );
    // Handed once only.
    let again = a.transaction(8, |tx| tx.hand_off_where(is_p1)).unwrap();
    assert_eq!(again.total(), 0);
    let taken = b.transaction(9, |tx| tx.take_over(&moving)).unwrap();
    assert_eq!(taken, handed);
    assert_eq!(taken.total(), 4);
    // Back to its first owner from a checkpoint that could not carry them.
    let revived = a
        .transaction(10, |tx| tx.revive_handed_where(is_p1))
        .unwrap();
    assert_eq!(
        revived.per_receiver().collect::<Vec<_>>(),
        vec![("am", 1), ("hook", 3)]
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
        ob.transaction(8, |tx| tx.take_over(&checkpoint))
            .unwrap()
            .total(),
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
            .unwrap()
            .total(),
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
    assert_eq!(
        ob.transaction(8, |tx| tx.take_over(&carried))
            .unwrap()
            .total(),
        1
    );
    let due = ob.due("hook", i64::MAX / 2, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].incident.contains("p1"));
}

/// An Alertmanager re-push of a scaled instance repeats only the
/// incidents it holds: one that went to another instance (its row gone
/// from `incidents`) is that one's to re-push and resolve.
#[test]
fn a_scaled_outbox_re_pushes_only_the_incidents_it_holds() {
    let d = tempfile::tempdir().unwrap();
    let ob = Outbox::open(d.path()).unwrap();
    ob.transaction(5, |tx| {
        tx.enqueue("am", &note("p1", 1, Action::Open), Status::Pending)?;
        tx.enqueue("am", &note("p2", 1, Action::Open), Status::Pending)
    })
    .unwrap();
    for row in ob.due("am", 10, 10).unwrap() {
        ob.finish(row.id, Status::Delivered, 1, None, 6).unwrap();
    }
    ob.transaction(6, |tx| tx.save_incident(&incident("p1", 1)))
        .unwrap();
    assert_eq!(ob.firing("am").unwrap().len(), 2, "one instance: both");
    let before = ob.handed_generation();
    ob.set_scaled();
    ob.note_moved();
    assert!(ob.handed_generation() > before);
    let firing = ob.firing("am").unwrap();
    assert_eq!(firing.len(), 1);
    assert!(firing[0].dedup_key.contains("p1"));
    // Its latest notification went out from here: that one is repeated.
    assert_eq!(firing[0].action, Action::Open);
}

/// An incident held without its latest notification delivered here (taken
/// over with its partition, heard through the instance it came from, or
/// back here after newer notifications went out elsewhere) is re-pushed as
/// it stands; one this receiver never heard of is not; and a scaled
/// instance that does not know its partitions yet (a restart after a
/// crash, its stored incidents long moved on) re-pushes nothing.
#[test]
fn a_scaled_outbox_re_pushes_taken_over_incidents_as_they_stand() {
    let d = tempfile::tempdir().unwrap();
    let ob = Outbox::open(d.path()).unwrap();
    ob.set_scaled();
    ob.await_ownership();
    ob.transaction(5, |tx| {
        // p1: taken over, heard through its previous owner.
        tx.save_incident(&incident("p1", 4))?;
        tx.hand_over("am", "product/product=p1/1000")?;
        // p2: taken over, this receiver never heard of it.
        tx.save_incident(&incident("p2", 2))?;
        // p3: its open delivered here, two notifications since elsewhere.
        tx.save_incident(&incident("p3", 3))?;
        tx.enqueue("am", &note("p3", 1, Action::Open), Status::Pending)
    })
    .unwrap();
    for row in ob.due("am", 10, 10).unwrap() {
        ob.finish(row.id, Status::Delivered, 1, None, 6).unwrap();
    }
    assert!(
        ob.firing("am").unwrap().is_empty(),
        "nothing before the partitions are known"
    );
    ob.note_owning();
    let firing = ob.firing("am").unwrap();
    let got: Vec<(String, u32, Action)> = firing
        .iter()
        .map(|n| (n.dedup_key.clone(), n.seq, n.action))
        .collect();
    assert_eq!(
        got,
        vec![
            ("product/product=p1/1000".to_string(), 4, Action::Update),
            ("product/product=p3/1000".to_string(), 3, Action::Update),
        ]
    );
    assert!(firing.iter().all(|n| n.resolved_at.is_none()));
}

fn incident(product: &str, seq: u32) -> crate::incident::lifecycle::Incident {
    crate::incident::lifecycle::Incident {
        key: format!("product/product={product}/1000"),
        route: "product".into(),
        labels: vec![("product".into(), product.into())],
        started_at: 1000,
        open_at: 1000,
        opened: true,
        seq,
        next_update_at: None,
        alerts: Vec::new(),
        acknowledged: false,
        quiet: 0,
        held: None,
        shown_peaks: Default::default(),
    }
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
