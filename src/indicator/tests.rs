//! Unit tests of the indicator arithmetic (surge values).

use super::*;

#[test]
fn surge_ratio_and_zscore() {
    // 10 baseline panes of 2 events each, window of 2 panes with 12 events.
    let v = surge_value(12, 20, 40, 2, 10, SurgeMethod::Ratio, 1.0).unwrap();
    assert!((v - 3.0).abs() < 1e-12);
    let z = surge_value(12, 20, 40, 2, 10, SurgeMethod::Zscore, 1.0).unwrap();
    // mean 2, var 0 → σ = √4 = 2; (12 − 4) / 2 = 4.
    assert!((z - 4.0).abs() < 1e-12);
    // Not enough history.
    assert_eq!(surge_value(12, 20, 40, 2, 1, SurgeMethod::Ratio, 1.0), None);
    // Floor.
    let v = surge_value(3, 0, 0, 2, 10, SurgeMethod::Ratio, 1.5).unwrap();
    assert!((v - 2.0).abs() < 1e-12);
}
