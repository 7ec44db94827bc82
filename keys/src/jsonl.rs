//! JSON Lines as every tenet command prints them with `--json`: one object per line,
//! each with a `type` and a `schema` naming the line's kind and version
//! (`tenet.FAMILY.TYPE/1`; `docs/json.md` lists them, `docs/json.schema.json` holds
//! their JSON Schema). Times are RFC 3339 strings in UTC.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

/// The version of every line type; a change that drops or retypes a field raises it.
pub const VERSION: u32 = 1;

/// The `schema` of a line of `family` (`converge`, `push`, `keys.verify`, ...) whose
/// `type` is `kind`.
pub fn schema(family: &str, kind: &str) -> String {
    format!("tenet.{family}.{kind}/{VERSION}")
}

/// `v` (an object with a string `type`) as one line of `family`: `schema` and `type`
/// first, then the other fields; a value without a `type` is returned as is.
pub fn to_line(family: &str, v: &impl Serialize) -> Result<String, serde_json::Error> {
    let v = serde_json::to_value(v)?;
    let Value::Object(mut map) = v else {
        return serde_json::to_string(&v);
    };
    let Some(Value::String(kind)) = map.remove("type") else {
        return serde_json::to_string(&map);
    };
    map.remove("schema");
    let mut line = format!(
        "{{\"schema\":{},\"type\":{}",
        serde_json::to_string(&schema(family, &kind))?,
        serde_json::to_string(&kind)?
    );
    for (k, v) in &map {
        line.push(',');
        line.push_str(&serde_json::to_string(k)?);
        line.push(':');
        line.push_str(&serde_json::to_string(v)?);
    }
    line.push('}');
    Ok(line)
}

/// Now, as every line's `time` is written: RFC 3339, UTC, whole seconds.
pub fn now() -> String {
    crate::time::Time::from_system(std::time::SystemTime::now()).to_string()
}

/// `v` (a struct or map) with a `time` field of now added, for a line that ends
/// something (a run's summary, an event's end).
pub fn with_time(v: &impl Serialize) -> Result<Value, serde_json::Error> {
    let mut v = serde_json::to_value(v)?;
    if let Value::Object(map) = &mut v {
        map.insert("time".to_string(), Value::String(now()));
    }
    Ok(v)
}

/// Writes `v` as one line of `family` (see [`to_line`]) to `out`.
pub fn write_line(out: &mut dyn Write, family: &str, v: &impl Serialize) -> io::Result<()> {
    let line = to_line(family, v).map_err(io::Error::other)?;
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_family_type_and_version() {
        let line = to_line(
            "push",
            &serde_json::json!({"type": "push_start", "serial": 3}),
        )
        .expect("serializes");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["schema"], "tenet.push.push_start/1");
        assert_eq!(v["serial"], 3);
        assert!(line.starts_with(r#"{"schema":"tenet.push.push_start/1","type":"push_start","#));
        assert!(!line.contains('\n'));
    }
}
