//! Responses in the generated stream: each complaint answered once, in the
//! responses' own id space, slower inside a complaint crisis; every other
//! line as it was before responses existed.

use super::super::responses::{RESPONSE_FAST_MS, RESPONSE_SLOW_MS};
use super::*;

#[test]
fn complaints_are_answered_once_in_their_own_id_space_slower_in_a_crisis() {
    let s = settings(DAY, 300.0, true, false);
    let end = s.start_ms + s.duration_ms;
    let (g, lines) = run_all(s);
    let evs: Vec<Ev> = lines.iter().map(|l| parse(l).unwrap()).collect();
    let complaints: HashMap<&str, &Ev> = evs
        .iter()
        .filter(|e| e.kind == "complaint")
        .map(|e| (e.id.as_str(), e))
        .collect();
    let mut answered: HashMap<&str, i64> = HashMap::new();
    for r in evs.iter().filter(|e| e.kind == "response") {
        let of = r.ref_id.as_deref().unwrap();
        let c = complaints
            .get(of)
            .unwrap_or_else(|| panic!("{of} is no complaint"));
        assert_eq!(r.customer, c.customer);
        assert!(
            answered.insert(of, r.ts - c.ts).is_none(),
            "{of} answered twice"
        );
    }
    // The quality surge's and the social spike's complaints wait longer.
    let overwhelmed = |e: &Ev| {
        g.crises().iter().any(|c| {
            (c.name == "quality_surge" && e.in_crisis(c))
                || (c.name == "social_spike"
                    && e.ts >= c.start_ms
                    && e.ts < c.end_ms
                    && e.product == "phone-z"
                    && e.channel == "social")
        })
    };
    let (mut slow, mut slow_past_hour) = (0, 0);
    for (id, c) in &complaints {
        let range = if overwhelmed(c) {
            RESPONSE_SLOW_MS
        } else {
            RESPONSE_FAST_MS
        };
        match answered.get(id) {
            Some(d) => {
                assert!((range.0..range.1).contains(d), "{id}: {d} ms");
                if overwhelmed(c) {
                    slow += 1;
                    slow_past_hour += usize::from(*d > HOUR);
                }
            }
            // Only a response due after the period is left out.
            None => assert!(c.ts + range.1 > end, "{id} unanswered"),
        }
    }
    assert!(
        answered.len() * 100 > complaints.len() * 95,
        "{} of {}",
        answered.len(),
        complaints.len()
    );
    assert!(slow > 500, "{slow} crisis complaints");
    assert!(
        slow_past_hour * 10 > slow * 8,
        "{slow_past_hour} of {slow} past an hour"
    );
}

#[test]
fn responses_leave_every_other_line_as_it_was() {
    // FNV-1a of the lines (each with a newline) other than responses, seed 7,
    // 6 h at 300 orders/min with crises and noise, recorded with the
    // generator before it sent responses (`crisiswatch generate`).
    let (_, lines) = run_all(settings(6 * HOUR, 300.0, true, true));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut n = 0;
    for l in lines
        .iter()
        .filter(|l| !l.windows(17).any(|w| w == b"\"type\":\"response\""))
    {
        n += 1;
        for &b in l.iter().chain(b"\n") {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!((n, h), (46_772, 0x7855_ff4f_63d8_1ae7));
    assert!(lines.len() > n + 500, "{} responses", lines.len() - n);
}

#[test]
fn a_next_period_answers_the_complaints_of_the_last_one_s_final_minutes() {
    // Two consecutive days from two generators (as a history of days is
    // built): the first day's responses due after midnight are carried over
    // and sent by the second day's generator, in time order.
    let day1 = settings(DAY, 300.0, false, false);
    let mut day2 = settings(DAY, 300.0, false, false);
    day2.seed = 8;
    day2.start_ms = day1.start_ms + DAY;
    let mut g1 = Generator::new(day1);
    let mut lines = Vec::new();
    g1.generate_until(i64::MAX, &mut lines);
    let carried = g1.take_carry_over();
    assert!(g1.take_carry_over().is_empty(), "taken once");
    assert!(
        carried.len() > 20 && carried.iter().all(|(ts, _)| *ts >= day2.start_ms),
        "{} carried",
        carried.len()
    );
    let first_of_day2 = lines.len();
    let mut g2 = Generator::new(day2);
    g2.carry_in(carried.clone());
    g2.generate_until(i64::MAX, &mut lines);
    let evs: Vec<Ev> = lines.iter().map(|l| parse(l).unwrap()).collect();
    assert!(
        evs[first_of_day2..].windows(2).all(|w| w[0].ts <= w[1].ts),
        "in time order"
    );
    // Every complaint of the first day is answered once, within its range.
    let answers: HashMap<&str, i64> = evs
        .iter()
        .filter(|e| e.kind == "response")
        .map(|e| (e.ref_id.as_deref().unwrap(), e.ts))
        .collect();
    for c in evs[..first_of_day2]
        .iter()
        .filter(|e| e.kind == "complaint")
    {
        let at = answers
            .get(c.id.as_str())
            .unwrap_or_else(|| panic!("{} unanswered", c.id));
        assert!((RESPONSE_FAST_MS.0..RESPONSE_FAST_MS.1).contains(&(at - c.ts)));
    }
    for (_, line) in &carried {
        assert!(lines.contains(line));
    }
}
