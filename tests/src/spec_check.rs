//! Checks JSON values against the schemas of the server's OpenAPI document (the OpenAPI 3.0
//! subset the document uses: `$ref`, `oneOf` with a discriminator, `anyOf`, objects with
//! `required` and closed `additionalProperties`, arrays, strings with `enum`, `maxLength` and the
//! formats `uuid`, `date` and `date-time`, integers with bounds, booleans, `nullable`). The tests
//! use it to hold the document to what the server really sends and accepts.

use serde_json::Value;

/// Every way `value` breaks the component schema `name` of `spec`; empty when it fits.
pub fn violations(spec: &Value, name: &str, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
    check(spec, &schema, value, name, &mut found);
    found
}

/// Every way `value` breaks `schema` (which may refer to the document's components).
pub fn violations_of(spec: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(spec, schema, value, "value", &mut found);
    found
}

/// Panics with every violation when `value` does not fit the component schema `name`.
pub fn assert_fits(spec: &Value, name: &str, value: &Value) {
    let found = violations(spec, name, value);
    assert!(
        found.is_empty(),
        "not a {name} as the OpenAPI document says:\n{}\nvalue: {value}",
        found.join("\n")
    );
}

fn resolve<'a>(spec: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.trim_start_matches('#');
    spec.pointer(pointer)
        .unwrap_or_else(|| panic!("the document has no {reference}"))
}

fn check(spec: &Value, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return check(spec, resolve(spec, reference), value, path, found);
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        if let Some(discriminator) = schema.get("discriminator") {
            let property = discriminator["propertyName"].as_str().unwrap_or_default();
            let tag = value
                .get(property)
                .and_then(Value::as_str)
                .unwrap_or_default();
            match discriminator["mapping"].get(tag).and_then(Value::as_str) {
                Some(target) => check(spec, resolve(spec, target), value, path, found),
                None => found.push(format!(
                    "{path}: `{property}` {tag:?} is not in the mapping"
                )),
            }
        } else {
            let fitting = alternatives
                .iter()
                .filter(|alternative| {
                    let mut inner = Vec::new();
                    check(spec, alternative, value, path, &mut inner);
                    inner.is_empty()
                })
                .count();
            if fitting != 1 {
                found.push(format!("{path}: fits {fitting} of the oneOf alternatives"));
            }
        }
        return;
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
        let fits_one = alternatives.iter().any(|alternative| {
            let mut inner = Vec::new();
            check(spec, alternative, value, path, &mut inner);
            inner.is_empty()
        });
        if !fits_one {
            found.push(format!("{path}: fits none of the anyOf alternatives"));
        }
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        found.push(format!("{path}: {value} is not one of {options:?}"));
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return; // any value
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            found.push(format!("{path}: null, but the {ty} is not nullable"));
        }
        return;
    }
    match ty {
        "object" => {
            let Some(object) = value.as_object() else {
                return found.push(format!("{path}: {value} is not an object"));
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !object.contains_key(key) {
                    found.push(format!("{path}: `{key}` is required"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, item) in object {
                let item_path = format!("{path}.{key}");
                match properties.and_then(|properties| properties.get(key)) {
                    Some(property) => check(spec, property, item, &item_path, found),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            found.push(format!("{item_path}: not a property of this schema"))
                        }
                        Some(Value::Bool(true)) | None => {}
                        Some(extra) => check(spec, extra, item, &item_path, found),
                    },
                }
            }
        }
        "array" => {
            let Some(items) = value.as_array() else {
                return found.push(format!("{path}: {value} is not an array"));
            };
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                found.push(format!("{path}: more than {max} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(spec, item_schema, item, &format!("{path}[{index}]"), found);
                }
            }
        }
        "string" => {
            let Some(text) = value.as_str() else {
                return found.push(format!("{path}: {value} is not a string"));
            };
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && text.chars().count() as u64 > max
            {
                found.push(format!("{path}: longer than {max} characters"));
            }
            let fits_format = match schema.get("format").and_then(Value::as_str) {
                Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
                Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
                Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                _ => true,
            };
            if !fits_format {
                found.push(format!("{path}: {text:?} is not a {}", schema["format"]));
            }
        }
        "integer" => {
            let Some(number) = value.as_i64() else {
                return found.push(format!("{path}: {value} is not an integer"));
            };
            if let Some(min) = schema.get("minimum").and_then(Value::as_i64)
                && number < min
            {
                found.push(format!("{path}: {number} is below {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_i64)
                && number > max
            {
                found.push(format!("{path}: {number} is above {max}"));
            }
        }
        "number" if !value.is_number() => found.push(format!("{path}: {value} is not a number")),
        "boolean" if !value.is_boolean() => found.push(format!("{path}: {value} is not a boolean")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::violations;

    #[test]
    fn the_checker_finds_what_breaks_a_schema() {
        let spec = json!({"components": {"schemas": {
            "Thing": {"type": "object", "required": ["id"], "additionalProperties": false,
                      "properties": {"id": {"type": "string", "format": "uuid"},
                                     "n": {"type": "integer", "maximum": 3},
                                     "kind": {"type": "string", "enum": ["a"]},
                                     "note": {"type": "string", "nullable": true}}},
            "Either": {"oneOf": [{"$ref": "#/components/schemas/Thing"}],
                       "discriminator": {"propertyName": "kind",
                                         "mapping": {"a": "#/components/schemas/Thing"}}},
        }}});
        let good = json!({"id": "0190a0e1-0000-7000-8000-000000000001", "n": 3, "kind": "a", "note": null});
        assert_eq!(violations(&spec, "Thing", &good), Vec::<String>::new());
        assert_eq!(violations(&spec, "Either", &good), Vec::<String>::new());
        for bad in [
            json!({"n": 1}),
            json!({"id": "7"}),
            json!({"id": "0190a0e1-0000-7000-8000-000000000001", "n": 4}),
            json!({"id": "0190a0e1-0000-7000-8000-000000000001", "extra": 1}),
            json!({"id": "0190a0e1-0000-7000-8000-000000000001", "kind": "b"}),
        ] {
            assert!(!violations(&spec, "Thing", &bad).is_empty(), "{bad}");
        }
        assert!(!violations(&spec, "Either", &json!({"kind": "z"})).is_empty());
    }
}
