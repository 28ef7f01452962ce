//! Values keyed by model or dataset name, in the study's order (not sorted by name).

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// `(name, value)` pairs in insertion order, written as a JSON object with the same key
/// order (a `BTreeMap` would sort the names; the study's order is base, instruct, then the
/// fine-tuned models). A name inserted twice keeps its first place and its last value, as a
/// JSON object built by inserting does.
#[derive(Debug, Clone, PartialEq)]
pub struct ByName<T>(pub Vec<(String, T)>);

impl<T> Default for ByName<T> {
    fn default() -> Self {
        ByName(Vec::new())
    }
}

impl<T> ByName<T> {
    /// Inserts `value` under `name`; a name already there keeps its place and takes the value.
    pub fn insert(&mut self, name: String, value: T) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The values in order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> FromIterator<(String, T)> for ByName<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        let mut out = ByName::default();
        for (name, value) in iter {
            out.insert(name, value);
        }
        out
    }
}

impl<T: Serialize> Serialize for ByName<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ByName<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Pairs<T> {
            type Value = ByName<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object keyed by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut out = ByName::default();
                while let Some((name, value)) = access.next_entry()? {
                    out.insert(name, value);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Pairs(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_both_ways() {
        let m: ByName<u32> = [("instruct", 2), ("base", 1)]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect();
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"instruct":2,"base":1}"#);
        let back: ByName<u32> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.get("base"), Some(&1));
    }

    #[test]
    fn a_name_given_twice_keeps_its_place_and_takes_the_last_value() {
        let m: ByName<u32> = [("a", 1), ("b", 2), ("a", 3)]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"a":3,"b":2}"#);
    }
}
