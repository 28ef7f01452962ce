//! The judges a study may name (`[evaluation] judge = "..."`), registered by the caller: the
//! study knows no world's rules itself. The `erosion` binary registers the model organism's
//! rule-based judge as `organism`; a library user registers whatever implements
//! [`erosion_eval::Judge`].

use erosion_eval::Judge;
use std::collections::BTreeMap;

/// Judges by name.
#[derive(Default)]
pub struct Judges {
    by_name: BTreeMap<String, Box<dyn Judge>>,
}

impl Judges {
    /// No judge: answers are sampled but not judged.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `judge` under `name` (replacing one of that name).
    pub fn with(mut self, name: &str, judge: Box<dyn Judge>) -> Self {
        self.by_name.insert(name.to_string(), judge);
        self
    }

    pub fn get(&self, name: &str) -> Option<&dyn Judge> {
        self.by_name.get(name).map(|j| j.as_ref())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}
