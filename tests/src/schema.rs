//! `docs/json.schema.json` applied to real `--json` output: every line must match its
//! definition (JSON Schema 2020-12, `date-time` formats checked). `tests/json.rs` runs
//! each reporting command through it; `tests/push.rs` and `tests/e2e.rs` validate the
//! push, run and apply output they read anyway.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json.schema.json")
}

/// `docs/json.schema.json`.
///
/// # Panics
/// If it cannot be read or is not JSON.
pub fn schema() -> Value {
    let text = fs::read_to_string(schema_path()).expect("docs/json.schema.json is readable");
    serde_json::from_str(&text).expect("docs/json.schema.json is JSON")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .expect("docs/json.schema.json is a valid JSON Schema")
}

/// Why `line` does not validate against its own definition (`$defs/FAMILY.TYPE`, from
/// its `schema` field), for a readable failure; `oneOf` alone only says "none matched".
fn why(schema: &Value, line: &Value) -> String {
    let Some(name) = line["schema"]
        .as_str()
        .and_then(|s| s.strip_prefix("tenet."))
        .and_then(|s| s.rsplit_once('/'))
        .map(|(name, _)| name.to_string())
    else {
        return "no schema field of the form tenet.FAMILY.TYPE/VERSION".to_string();
    };
    if schema["$defs"].get(&name).is_none() {
        return format!("no definition $defs/{name} in docs/json.schema.json");
    }
    let one = serde_json::json!({
        "$schema": schema["$schema"],
        "$defs": schema["$defs"],
        "$ref": format!("#/$defs/{name}"),
    });
    let v = validator(&one);
    v.iter_errors(line)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Validates every line of `stdout` and returns the set of their `schema` values.
///
/// # Panics
/// On a line that is not JSON or does not validate.
pub fn validate(what: &str, stdout: &[u8]) -> BTreeSet<String> {
    let schema = schema();
    let v = validator(&schema);
    let text = String::from_utf8_lossy(stdout);
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: a line is not JSON ({e}): {line}"));
        assert!(
            v.is_valid(&value),
            "{what}: a line does not match docs/json.schema.json: {}\n{line}",
            why(&schema, &value)
        );
        seen.insert(value["schema"].as_str().unwrap_or_default().to_string());
    }
    seen
}
