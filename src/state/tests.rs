//! The store: incremental checkpoints round-trip through SQLite into an
//! engine that continues exactly; damaged, truncated and other-format
//! checkpoints are refused; the previous layout is migrated.

use std::collections::HashMap;

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::*;
use crate::config::Config;
use crate::engine::{Op, ShardedEngine};
use crate::event::decode;

const CFG: &str = r#"
[engine]
dedup_max_ids = 5000
[[rules]]
name = "c"
group_by = ["product"]
window = "10m"
slide = "1m"
indicator = { kind = "count", select = { type = "complaint" } }
thresholds = { warning = 3 }
for = "2m"
"#;

fn cfg() -> Config {
    Config::from_toml_str(CFG, &HashMap::<String, String>::new()).unwrap()
}

fn lines(from: usize, to: usize) -> Vec<String> {
    let t0 = 1_795_132_800_000i64;
    (from..to)
        .map(|i| {
            format!(
                r#"{{"id":"e{i}","type":"complaint","ts":{},"attrs":{{"product":"p{}"}}}}"#,
                t0 + i as i64 * 7_000,
                // A burst on four products from event 450 on.
                if i >= 450 { i % 4 } else { i % 40 }
            )
        })
        .collect()
}

fn feed(e: &mut ShardedEngine, lines: &[String], out: &mut Vec<crate::alert::Transition>) {
    let limits = *e.limits();
    let evs: Vec<_> = lines
        .iter()
        .map(|l| decode(l.as_bytes(), &limits, None).unwrap())
        .collect();
    let ops: Vec<Op> = evs.iter().map(Op::Process).collect();
    e.run(&ops, out, &mut Vec::new());
}

fn progress() -> Vec<PartitionState> {
    vec![PartitionState {
        topic: "complaints".into(),
        partition: 2,
        max_ts: Some(99),
        resume: 10,
        next: 20,
        pending: vec![10, 15],
        last: Some(Last {
            offset: 19,
            print: 0xdead_beef,
        }),
    }]
}

#[test]
fn partition_progress_without_a_last_message_still_loads() {
    // Checkpoints written before `last` existed.
    let old = r#"[{"topic":"complaints","partition":2,"max_ts":99,"resume":10,"next":20,"pending":[10,15]}]"#;
    let parts: Vec<PartitionState> = serde_json::from_str(old).unwrap();
    assert_eq!(parts[0].last, None);
    assert_eq!(parts[0].next, 20);
    let now = serde_json::to_string(&progress()).unwrap();
    assert!(
        now.contains(r#""last":{"offset":19,"print":3735928559}"#),
        "{now}"
    );
    let back: Vec<PartitionState> = serde_json::from_str(&now).unwrap();
    assert_eq!(back, progress());
}

fn write(s: &mut StateStore, e: &mut ShardedEngine, full: bool) -> usize {
    let d = e.checkpoint_delta(full).unwrap();
    let n = d.upserts.len();
    s.write(&Checkpoint {
        written_ms: 1_795_132_800_000,
        engine: d,
        released_below: Some(42),
        partitions: progress(),
    })
    .unwrap();
    n
}

fn restored(s: &StateStore) -> Result<ShardedEngine, String> {
    let cp = s.load().map_err(|e| e.to_string())?.ok_or("none")?;
    assert_eq!(cp.partitions, progress());
    assert_eq!(cp.released_below, Some(42));
    let mut e = ShardedEngine::new(&cfg(), 1, 64).unwrap();
    match &cp.engine {
        EngineState::Rows(r) => e.restore_stored(r).map_err(|e| e.to_string())?,
        EngineState::Whole(b) => e.restore(b).map_err(|e| e.to_string())?,
    };
    Ok(e)
}

#[test]
fn incremental_checkpoints_round_trip_and_write_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StateStore::open(dir.path()).unwrap();
    assert_eq!(s.load().unwrap(), None);
    let mut e = ShardedEngine::new(&cfg(), 1, 64).unwrap();
    let mut whole = Vec::new();
    feed(&mut e, &lines(0, 400), &mut whole);
    assert_eq!(write(&mut s, &mut e, false), 40, "the first is full");
    // Ten events touch ten of the forty groups.
    feed(&mut e, &lines(400, 410), &mut whole);
    // (and those whose panes left the window as the clock moved a minute).
    let n = write(&mut s, &mut e, false);
    assert!((10..15).contains(&n), "only the groups that changed: {n}");
    let at = whole.len();
    feed(&mut e, &lines(410, 600), &mut whole);
    drop(s);
    let s = StateStore::open(dir.path()).unwrap();
    let mut r = restored(&s).unwrap();
    let mut again = Vec::new();
    feed(&mut r, &lines(410, 600), &mut again);
    let json = |v: &[crate::alert::Transition]| -> Vec<String> {
        v.iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect()
    };
    assert!(!again.is_empty());
    assert_eq!(
        json(&again),
        json(&whole[at..]),
        "the restored engine continues exactly"
    );
}

#[test]
fn reset_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StateStore::open(dir.path()).unwrap();
    let mut e = ShardedEngine::new(&cfg(), 1, 64).unwrap();
    feed(&mut e, &lines(0, 100), &mut Vec::new());
    write(&mut s, &mut e, false);
    assert!(s.stamp().unwrap().is_some());
    assert!(s.reset().unwrap());
    assert_eq!(s.load().unwrap(), None);
    assert_eq!(s.stamp().unwrap(), None);
    assert!(!s.reset().unwrap());
}

#[test]
fn covered_offsets_are_the_done_ones() {
    let p = &progress()[0];
    assert!(p.covers(3), "before resume");
    assert!(!p.covers(10), "held at the checkpoint");
    assert!(p.covers(11));
    assert!(!p.covers(15));
    assert!(p.covers(19));
    assert!(!p.covers(20), "not read before the checkpoint");
}

fn stored() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StateStore::open(dir.path()).unwrap();
    let mut e = ShardedEngine::new(&cfg(), 1, 64).unwrap();
    feed(&mut e, &lines(0, 300), &mut Vec::new());
    write(&mut s, &mut e, false);
    assert!(restored(&s).is_ok());
    (dir, s)
}

#[test]
fn damaged_truncated_and_other_format_checkpoints_are_refused() {
    let refused = |s: &StateStore, what: &str| {
        let e = s.load().map(|_| ()).map_err(|e| e.to_string());
        let e = match e {
            Err(e) => e,
            // Loads (each part matches its checksum), the engine refuses it.
            Ok(()) => restored(s).map(|_| ()).unwrap_err(),
        };
        assert!(
            e.contains("crisiswatch state reset") || e.contains("stored"),
            "{what}: {e}"
        );
    };
    // A flipped byte in a group's row.
    let (_d, s) = stored();
    s.conn()
        .execute(
            "UPDATE state_groups SET data = CAST(X'00' || data AS BLOB) WHERE key = (SELECT key FROM state_groups LIMIT 1)",
            [],
        )
        .unwrap();
    let e = s.load().unwrap_err();
    assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    assert!(e.is_unloadable());
    assert!(e.to_string().contains("crisiswatch state reset"), "{e}");
    // A row missing (a truncated table): the record's count says so.
    let (_d, s) = stored();
    s.conn()
        .execute(
            "DELETE FROM state_groups WHERE key = (SELECT key FROM state_groups LIMIT 1)",
            [],
        )
        .unwrap();
    assert!(s.load().is_ok());
    let e = restored(&s).unwrap_err();
    assert!(e.contains("groups stored"), "{e}");
    refused(&s, "row missing");
    // The record damaged.
    let (_d, s) = stored();
    s.conn()
        .execute("UPDATE state_meta SET meta = X'0102'", [])
        .unwrap();
    assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
    // A dedup chunk damaged.
    let (_d, s) = stored();
    s.conn()
        .execute(
            "UPDATE state_dedup SET data = CAST(X'01' || data AS BLOB)",
            [],
        )
        .unwrap();
    assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
    // Garbled partition progress.
    let (_d, s) = stored();
    s.conn()
        .execute("UPDATE state_meta SET partitions = 'nope'", [])
        .unwrap();
    assert!(matches!(s.load(), Err(StateError::Corrupt { .. })));
    // Another format.
    let (_d, s) = stored();
    s.conn()
        .execute("UPDATE state_meta SET format = 7", [])
        .unwrap();
    let e = s.load().unwrap_err();
    assert!(matches!(e, StateError::Version { found: 7, .. }), "{e}");
    assert!(e.is_unloadable());
}

/// A store of the previous layout: one row holding the whole snapshot.
fn legacy(dir: &std::path::Path, format: u32, engine: &[u8]) {
    let c = rusqlite::Connection::open(dir.join(FILE_NAME)).unwrap();
    c.execute_batch(
        "CREATE TABLE checkpoint (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             format INTEGER NOT NULL,
             written_ms INTEGER NOT NULL,
             engine BLOB NOT NULL,
             engine_sha256 BLOB NOT NULL,
             released_below INTEGER,
             partitions TEXT NOT NULL
         );",
    )
    .unwrap();
    c.execute(
        "INSERT INTO checkpoint VALUES (1, ?1, 1795132800000, ?2, ?3, 42, ?4)",
        params![
            format,
            engine,
            Sha256::digest(engine).as_slice(),
            serde_json::to_string(&progress()).unwrap()
        ],
    )
    .unwrap();
}

#[test]
fn a_checkpoint_of_the_previous_layout_is_migrated_and_older_ones_refused() {
    let mut e = ShardedEngine::new(&cfg(), 1, 64).unwrap();
    let mut want = Vec::new();
    feed(&mut e, &lines(0, 300), &mut want);
    let bytes = e.snapshot().unwrap();
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), LEGACY_FORMAT, &bytes);
    let mut s = StateStore::open(dir.path()).unwrap();
    let cp = s.load().unwrap().unwrap();
    assert_eq!(cp.engine, EngineState::Whole(bytes.clone()));
    let mut r = restored(&s).unwrap();
    // The first checkpoint after it is full and drops the old table.
    assert_eq!(write(&mut s, &mut r, false), 40);
    assert!(matches!(
        s.load().unwrap().unwrap().engine,
        EngineState::Rows(_)
    ));
    let tables: i64 = s
        .conn()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'checkpoint'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    // An older layout's format is refused, and a reset clears it.
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), 1_003, &bytes);
    let mut s = StateStore::open(dir.path()).unwrap();
    let e = s.load().unwrap_err();
    assert!(matches!(e, StateError::Version { found: 1_003, .. }), "{e}");
    assert!(s.reset().unwrap());
    assert_eq!(s.load().unwrap(), None);
}

fn progress_of(resume: i64, next: i64, pending: Vec<i64>) -> PartitionState {
    PartitionState {
        topic: "t".into(),
        partition: 0,
        max_ts: None,
        resume,
        next,
        pending,
        last: None,
    }
}

/// The helper trial's case: a restart re-reads from the committed offset
/// (28,000) towards the checkpoint's position (84,626); a checkpoint
/// written on the way keeps the checkpoint's position, not the session's.
#[test]
fn a_checkpoint_while_re_reading_the_covered_stretch_keeps_the_restored_position() {
    let p = progress_of(84_626, 84_630, vec![84_627]);
    // The session read 28,000..28,539, one of them held.
    let (resume, next, pending) = p.merged(28_500, 28_540, &[28_510]);
    assert_eq!((resume, next, pending), (84_627, 84_630, vec![84_627]));
    // Once it re-read and applied the restored pending offset, nothing is.
    let (resume, next, pending) = p.merged(84_628, 84_631, &[]);
    assert_eq!((resume, next, pending), (84_631, 84_631, vec![]));
}

proptest::proptest! {
    /// An offset is done if the restored checkpoint or the session has it
    /// done: against a naive walk over every offset.
    #[test]
    fn merged_progress_is_the_union_of_what_is_done(
        r_resume in 0i64..20, r_len in 0i64..20, r_pend in proptest::collection::vec(0i64..40, 0..6),
        s_resume in 0i64..30, s_len in 0i64..20, s_pend in proptest::collection::vec(0i64..50, 0..6),
    ) {
        let r_next = r_resume + r_len;
        let mut rp: Vec<i64> = r_pend.into_iter().filter(|&o| o >= r_resume && o < r_next).collect();
        rp.sort_unstable();
        rp.dedup();
        let s_next = s_resume + s_len;
        let mut sp: Vec<i64> = s_pend.into_iter().filter(|&o| o >= s_resume && o < s_next).collect();
        sp.sort_unstable();
        sp.dedup();
        let p = progress_of(r_resume, r_next, rp.clone());
        let (resume, next, pending) = p.merged(s_resume, s_next, &sp);
        let done = |o: i64| {
            p.covers(o) || o < s_resume || (o < s_next && !sp.contains(&o))
        };
        let want_next = r_next.max(s_next);
        let want_pending: Vec<i64> = (0..want_next).filter(|&o| !done(o)).collect();
        let want_resume = want_pending.first().copied().unwrap_or(want_next);
        proptest::prop_assert_eq!((resume, next, pending), (want_resume, want_next, want_pending));
    }
}
