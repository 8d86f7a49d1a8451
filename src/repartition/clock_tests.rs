//! The owner's clock beyond the data: a quiet stream moves it with the wall
//! clock (as on one instance), and clock messages written under another
//! configuration never move it. Also the messages' wire version.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::alert::State;
use crate::config::Config;
use crate::engine::EngineView;
use crate::event::decode;

const T0: i64 = 1_795_132_800_000;

fn config(warning: u32, workers: usize) -> Config {
    let toml = format!(
        r#"
[engine]
allowed_lateness = "1m"
workers = {workers}
[[rules]]
name = "complaints"
group_by = ["product"]
window = "5m"
slide = "1m"
indicator = {{ kind = "count", select = {{ type = "complaint" }} }}
thresholds = {{ warning = {warning} }}
clear = 1
"#
    );
    Config::from_toml_str(&toml, &HashMap::<String, String>::new()).expect("test config")
}

const S0: Source = Source {
    topic: 0,
    partition: 0,
};
const S1: Source = Source {
    topic: 0,
    partition: 1,
};

/// An owner of the only internal partition, fed by S0 and S1, given ten
/// complaints on S0 (S1 reported once, at T0) and both sources idle.
fn firing(cfg: &Config) -> (Owner, Splitter, Vec<Keyed>) {
    let mut owner = Owner::new(cfg, 4, 1, [0], vec![S0, S1]).expect("owner");
    let mut split = Splitter::new(cfg, 4, 1).expect("splitter");
    let limits = *split.limits();
    let mut out = Vec::new();
    for i in 0..10i64 {
        let line = format!(
            r#"{{"id":"e{i}","type":"complaint","ts":{},"attrs":{{"product":"p1"}}}}"#,
            T0 + i * 1000
        );
        let ev = decode(line.as_bytes(), &limits, None).expect("valid");
        let (_, env) = split.split(S0, i, &ev, line.as_bytes()).expect("routed");
        owner.offer(0, i, env, &mut out);
    }
    let mut other = Splitter::new(cfg, 4, 1).expect("splitter");
    let line = r#"{"id":"o1","type":"order","ts":1795132800000,"attrs":{"product":"p2"}}"#;
    let ev = decode(line.as_bytes(), &limits, None).expect("valid");
    let _ = other.split(S1, 0, &ev, line.as_bytes());
    for r in split.reports().into_iter().chain(other.reports()) {
        owner.offer(0, 100, r, &mut out);
    }
    // Both sources go idle: the clock is the newest time reported.
    owner.offer(0, 101, split.idle(S0), &mut out);
    owner.offer(0, 102, split.idle(S1), &mut out);
    owner.release(&mut out, |_, _, _| {});
    (owner, split, out)
}

fn states(out: &[Keyed]) -> Vec<State> {
    out.iter().map(|k| k.transition.state).collect()
}

#[test]
fn a_quiet_stream_moves_the_clock_on_and_resolves() {
    let cfg = config(5, 1);
    let (mut owner, split, mut out) = firing(&cfg);
    // The complaints are within the lateness of the newest time: held.
    assert_eq!(owner.held(), 10);
    assert!(out.is_empty(), "{:?}", states(&out));
    let clock = owner.engine().clock().expect("a clock");
    assert_eq!(clock, T0 + 9_000 - 60_000 - 1, "newest minus the lateness");
    out.clear();
    // Quiet for ten minutes on S0 only: S1 is idle but not quiet, nothing moves.
    owner.offer(0, 103, split.quiet(S0, Duration::from_secs(600)), &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.engine().clock(), Some(clock));
    // Quiet on both (the shortest spell counts): the window empties, the alert resolves.
    owner.offer(0, 104, split.quiet(S1, Duration::from_secs(480)), &mut out);
    owner.release(&mut out, |_, _, _| {});
    let now = owner.engine().clock().expect("a clock");
    assert_eq!(now, T0 + 9_000 + 480_000 - 60_000 - 1);
    assert_eq!(owner.held(), 0);
    assert_eq!(
        states(&out),
        [State::Firing, State::Resolved],
        "fired by the complaints, resolved by the quiet clock"
    );
    // An event ends the quiet spell of its pair: the clock stays where it was.
    out.clear();
    owner.offer(0, 105, split.idle(S0), &mut out);
    let limits = *split.limits();
    let mut again = Splitter::new(&cfg, 4, 1).expect("splitter");
    let line = format!(
        r#"{{"id":"late","type":"order","ts":{},"attrs":{{"product":"p1"}}}}"#,
        T0 + 10_000
    );
    let ev = decode(line.as_bytes(), &limits, None).expect("valid");
    let _ = again.split(S1, 1, &ev, line.as_bytes());
    for r in again.reports() {
        owner.offer(0, 106, r, &mut out);
    }
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.engine().clock(), Some(now));
}

#[test]
fn clock_messages_of_another_configuration_are_refused() {
    let mine = config(5, 1);
    let theirs = config(6, 1);
    assert_ne!(fingerprint(&mine), fingerprint(&theirs));
    assert_eq!(
        fingerprint(&mine),
        fingerprint(&config(5, 2)),
        "worker threads are per machine"
    );
    let mut owner = Owner::new(&mine, 4, 1, [0], vec![S0]).expect("owner");
    let foreign = Splitter::new(&theirs, 4, 1).expect("splitter");
    let mut split = Splitter::new(&mine, 4, 1).expect("splitter");
    let limits = *split.limits();
    let line = format!(
        r#"{{"id":"e1","type":"complaint","ts":{},"attrs":{{"product":"p1"}}}}"#,
        T0
    );
    let ev = decode(line.as_bytes(), &limits, None).expect("valid");
    let (_, env) = split.split(S0, 0, &ev, line.as_bytes()).expect("routed");
    let mut out = Vec::new();
    owner.offer(0, 0, env, &mut out);
    let report = split.reports().pop().expect("a report");
    // The same report under the other configuration's fingerprint.
    let Envelope::Report {
        source,
        newest,
        origins,
        ..
    } = report.clone()
    else {
        panic!("a report")
    };
    let stranger = Envelope::Report {
        source,
        newest: newest + 600_000,
        origins,
        config: foreign.fingerprint(),
    };
    owner.offer(0, 1, stranger, &mut out);
    owner.offer(0, 2, foreign.quiet(S0, Duration::from_secs(3600)), &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.engine().clock(), None, "nothing moved the clock");
    assert_eq!(owner.held(), 1);
    assert_eq!(owner.foreign(), Some((0, S0, foreign.fingerprint())));
    // The pair's next message of this configuration lifts the refusal.
    owner.offer(0, 3, report, &mut out);
    assert_eq!(owner.foreign(), None);
    owner.offer(0, 4, split.idle(S0), &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.engine().clock(), Some(T0 - 60_000 - 1));
}

#[test]
fn an_envelope_round_trips_and_another_version_is_refused() {
    let env = Envelope::Report {
        source: Source {
            topic: 1,
            partition: 3,
        },
        newest: T0,
        origins: vec![(2, T0 - 5)],
        config: 42,
    };
    let bytes = env.encode();
    assert_eq!(bytes[0], WIRE_VERSION);
    assert_eq!(Envelope::decode(&bytes).expect("decodes"), env);
    let mut other = bytes.clone();
    other[0] = WIRE_VERSION + 1;
    assert!(matches!(
        Envelope::decode(&other),
        Err(WireError::Version { found: Some(_) })
    ));
    assert!(matches!(
        Envelope::decode(&[]),
        Err(WireError::Version { found: None })
    ));
    assert!(matches!(
        Envelope::decode(&[WIRE_VERSION, 7]),
        Err(WireError::Decode(_))
    ));
}

/// Complaints about p1 at `times` from `source`, split by `split` and
/// offered to `owner`'s partition 0, then the source's report.
fn deliver(
    owner: &mut Owner,
    split: &mut Splitter,
    source: Source,
    times: &[i64],
    out: &mut Vec<Keyed>,
) {
    let limits = *split.limits();
    for &ts in times {
        let line = format!(
            r#"{{"id":"{}-{ts}","type":"complaint","ts":{ts},"attrs":{{"product":"p1"}}}}"#,
            source.partition
        );
        let ev = decode(line.as_bytes(), &limits, None).expect("valid");
        let (_, env) = split
            .split(source, ts, &ev, line.as_bytes())
            .expect("routed");
        owner.offer(0, ts, env, out);
    }
    for r in split.reports() {
        owner.offer(0, 0, r, out);
    }
}

/// An owner fed by S0 and S1, each with ten seconds of complaints from
/// `T0`, then both idle: the whole stream paused.
fn paused(cfg: &Config) -> (Owner, [Splitter; 2], Vec<Keyed>) {
    let mut owner = Owner::new(cfg, 4, 1, [0], vec![S0, S1]).expect("owner");
    let mut a = Splitter::new(cfg, 4, 1).expect("splitter");
    let mut b = Splitter::new(cfg, 4, 1).expect("splitter");
    let mut out = Vec::new();
    let first: Vec<i64> = (0..10).map(|i| T0 + i * 1000).collect();
    deliver(&mut owner, &mut a, S0, &first, &mut out);
    deliver(&mut owner, &mut b, S1, &first, &mut out);
    owner.offer(0, 0, a.idle(S0), &mut out);
    owner.offer(0, 0, b.idle(S1), &mut out);
    owner.release(&mut out, |_, _, _| {});
    (owner, [a, b], out)
}

#[test]
fn after_a_pause_of_the_whole_stream_every_source_holds_the_clock_again() {
    let cfg = config(50, 1);
    let (mut owner, [mut a, mut b], mut out) = paused(&cfg);
    let held = owner.engine().clock();
    assert_eq!(held, Some(T0 + 9_000 - 60_000 - 1));
    // The burst after the pause: S0's part first (ten minutes of it), then
    // S1's. S1, woken, holds the clock at its newest time meanwhile.
    let burst: Vec<i64> = (0..600).map(|i| T0 + 10_000 + i * 1000).collect();
    deliver(&mut owner, &mut a, S0, &burst, &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.woken(), 1);
    assert_eq!(owner.engine().clock(), held, "S1 holds the clock");
    deliver(&mut owner, &mut b, S1, &burst, &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.woken(), 0, "S1 delivered");
    assert_eq!(
        owner.engine().counters().late,
        0,
        "no event of the burst came late"
    );
    assert_eq!(
        owner.engine().clock(),
        Some(T0 + 609_000 - 60_000 - 1),
        "both sources moved the clock"
    );
}

#[test]
fn a_woken_source_that_stays_silent_stops_holding_the_clock_at_its_second_idle_report() {
    let cfg = config(50, 1);
    let (mut owner, [mut a, b], mut out) = paused(&cfg);
    let burst: Vec<i64> = (0..600).map(|i| T0 + 10_000 + i * 1000).collect();
    deliver(&mut owner, &mut a, S0, &burst, &mut out);
    owner.release(&mut out, |_, _, _| {});
    let held = Some(T0 + 9_000 - 60_000 - 1);
    assert_eq!(owner.engine().clock(), held);
    // S1's stage still reads nothing: it repeats that S1 is idle every
    // `idle_partition_timeout`. The first repeat may predate the burst at
    // that stage: the wake holds.
    owner.offer(0, 0, b.idle(S1), &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.woken(), 1);
    assert_eq!(owner.engine().clock(), held);
    // Its stage's quiet reports do not end the wake either.
    owner.offer(0, 0, b.quiet(S1, Duration::from_secs(40)), &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.engine().clock(), held);
    // The second: a whole timeout after the first without a message.
    owner.offer(0, 0, b.idle(S1), &mut out);
    owner.release(&mut out, |_, _, _| {});
    assert_eq!(owner.woken(), 0);
    assert_eq!(owner.engine().clock(), Some(T0 + 609_000 - 60_000 - 1));
}

#[test]
fn one_idle_source_does_not_wake_another_while_a_third_is_active() {
    let cfg = config(50, 1);
    let s2 = Source {
        topic: 0,
        partition: 2,
    };
    let mut owner = Owner::new(&cfg, 4, 1, [0], vec![S0, S1, s2]).expect("owner");
    let mut split: Vec<Splitter> = (0..3)
        .map(|_| Splitter::new(&cfg, 4, 1).expect("splitter"))
        .collect();
    let mut out = Vec::new();
    let first: Vec<i64> = (0..10).map(|i| T0 + i * 1000).collect();
    for (s, sp) in [S0, S1, s2].into_iter().zip(split.iter_mut()) {
        deliver(&mut owner, sp, s, &first, &mut out);
    }
    // S1 and S2 idle, S0 active: S1 delivering again wakes nobody.
    owner.offer(0, 0, split[1].idle(S1), &mut out);
    owner.offer(0, 0, split[2].idle(s2), &mut out);
    let more: Vec<i64> = (10..20).map(|i| T0 + i * 1000).collect();
    deliver(&mut owner, &mut split[1], S1, &more, &mut out);
    assert_eq!(owner.woken(), 0);
}
