//! A run's options as a table a reader can scan: one row per setting, named by its path in
//! the options (`layers.window`), instead of a page of pretty-printed JSON.

use serde_json::Value;

/// (path, value) rows of `options`, in their order. Scalars and lists of scalars are one row
/// each; objects and lists of objects are walked into (`causal.tests[0].name`); an empty
/// object or list is a row of its own, so nothing set is dropped.
pub fn option_rows(options: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    walk("", options, &mut rows);
    rows
}

fn walk(path: &str, v: &Value, rows: &mut Vec<(String, String)>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, x) in map {
                walk(&join(k), x, rows);
            }
        }
        Value::Array(items) if items.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in items.iter().enumerate() {
                walk(&format!("{path}[{i}]"), x, rows);
            }
        }
        _ => rows.push((
            if path.is_empty() {
                "(value)".into()
            } else {
                path.to_string()
            },
            scalar(v),
        )),
    }
}

/// A scalar, or a list of scalars, as text: strings without quotes, lists comma-separated.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "(empty list)".into(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(_) => "(empty)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_options_read_as_paths() {
        let v = serde_json::json!({
            "seed": 7,
            "layers": {"window": 10, "datasets": ["insecure", "toxic"], "short": null},
            "tests": [{"name": "restore", "scale": 1.0}],
            "logs": {},
            "name": "demo"
        });
        let rows = option_rows(&v);
        let want = [
            ("seed", "7"),
            ("layers.window", "10"),
            ("layers.datasets", "insecure, toxic"),
            ("layers.short", "none"),
            ("tests[0].name", "restore"),
            ("tests[0].scale", "1.0"),
            ("logs", "(empty)"),
            ("name", "demo"),
        ];
        let got: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(got, want);
    }
}
