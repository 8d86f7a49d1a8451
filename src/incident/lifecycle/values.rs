//! Where progress updates take current values and hints from.

use crate::alert::Labels;
use crate::explain::Hint;

/// Current indicator values, for progress updates.
pub trait ValueSource {
    /// The current value of `rule` on `group`, if known.
    fn current(&mut self, rule: &str, group: &Labels) -> Option<f64>;

    /// The current root-cause hints of `rule` on `group` (`None`: unknown,
    /// the last ones stay).
    fn hints(&mut self, _rule: &str, _group: &Labels) -> Option<Vec<Hint>> {
        None
    }
}

/// No live values: progress updates repeat the last value seen in a transition.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoValues;

impl ValueSource for NoValues {
    fn current(&mut self, _rule: &str, _group: &Labels) -> Option<f64> {
        None
    }
}

impl ValueSource for crate::engine::Engine {
    fn current(&mut self, rule: &str, group: &Labels) -> Option<f64> {
        let i = (0..self.rule_count()).find(|&i| self.rule_config(i).name == rule)?;
        self.current_value(i, group)
    }

    fn hints(&mut self, rule: &str, group: &Labels) -> Option<Vec<Hint>> {
        crate::engine::Engine::hints(self, rule, group)
    }
}
