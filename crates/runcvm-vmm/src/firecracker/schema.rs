//! Checks JSON against Firecracker's published API description (Swagger 2.0),
//! so that what this backend writes can be verified where no Firecracker
//! runs. Test support: the tests read the YAML description with a YAML
//! deserializer and validate every configuration and request body here.
//!
//! Only the part of Swagger that the description uses is understood: `type`
//! (`object`, `string`, `integer`, `number`, `boolean`, `array`),
//! `required`, `properties`, `items`, `$ref` (`#/definitions/NAME`), `enum`,
//! `minimum`, `maximum` and `additionalProperties: true`. Every other keyword
//! the description might use makes loading fail, so nothing is skipped
//! silently; purely descriptive ones (`description`, `default`, `format`,
//! `example`, `readOnly`) are accepted and not checked. Objects are closed:
//! a key the schema does not list is an error (Firecracker refuses unknown
//! fields), unless the schema says `additionalProperties: true`.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The parts of the API description that matter for validation.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiDescription {
    /// The `info.version`, e.g. `1.16.1`.
    pub info: Info,
    pub definitions: BTreeMap<String, Schema>,
    /// Path → method (`get`, `put`, `patch`) → operation.
    pub paths: BTreeMap<String, BTreeMap<String, Operation>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    pub version: String,
}

/// One operation of a path.
#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// Status code (or `default`) → answer.
    #[serde(default)]
    pub responses: BTreeMap<String, ResponseSpec>,
}

/// A request parameter; the one `in: body` carries the request's schema.
#[derive(Debug, Clone, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "in")]
    pub location: String,
    #[serde(default)]
    pub schema: Option<Schema>,
}

/// An answer of an operation.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseSpec {
    #[serde(default)]
    pub schema: Option<Schema>,
}

/// A schema, in the subset of Swagger the description uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Schema>,
    pub items: Option<Box<Schema>>,
    #[serde(rename = "$ref")]
    pub reference: Option<String>,
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    #[serde(rename = "additionalProperties")]
    pub additional_properties: Option<bool>,
    // Descriptive only.
    pub description: Option<String>,
    pub default: Option<Value>,
    pub format: Option<String>,
    pub example: Option<Value>,
    #[serde(rename = "readOnly")]
    pub read_only: Option<bool>,
}

/// One place where a value does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as `$.drives[0].is_root_device`.
    pub at: String,
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

/// Every violation found in one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("does not match the {schema} schema: {}", join(.violations))]
pub struct Invalid {
    pub schema: String,
    pub violations: Vec<Violation>,
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiDescription {
    /// The definition called `name`.
    pub fn definition(&self, name: &str) -> Option<&Schema> {
        self.definitions.get(name)
    }

    /// Validates `value` against the definition called `name`.
    pub fn validate(&self, name: &str, value: &Value) -> Result<(), Invalid> {
        let schema = Schema {
            reference: Some(format!("#/definitions/{name}")),
            ..Schema::default()
        };
        self.validate_schema(name, &schema, value)
    }

    /// Validates `value` against `schema`, naming it `label` in errors.
    pub fn validate_schema(&self, label: &str, schema: &Schema, value: &Value) -> Result<(), Invalid> {
        let mut violations = Vec::new();
        self.check(schema, value, "$", &mut violations);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Invalid {
                schema: label.to_owned(),
                violations,
            })
        }
    }

    /// The operation serving `method` on `path` (a concrete path such as
    /// `/drives/root` matches the template `/drives/{drive_id}`).
    pub fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let method = method.to_ascii_lowercase();
        self.paths
            .iter()
            .find(|(template, _)| path_matches(template, path))
            .and_then(|(_, operations)| operations.get(&method))
    }

    /// The schema of the body of `method path`, if the operation takes one.
    pub fn request_schema(&self, method: &str, path: &str) -> Option<&Schema> {
        self.operation(method, path)?
            .parameters
            .iter()
            .find(|p| p.location == "body")
            .and_then(|p| p.schema.as_ref())
    }

    /// The schema of the answer `status` to `method path` (or the
    /// operation's `default` answer).
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Option<&Schema> {
        let responses = &self.operation(method, path)?.responses;
        responses
            .get(&status.to_string())
            .or_else(|| responses.get("default"))
            .and_then(|r| r.schema.as_ref())
    }

    fn resolve<'a>(&'a self, schema: &'a Schema, at: &str, violations: &mut Vec<Violation>) -> Option<&'a Schema> {
        let mut schema = schema;
        // A chain of references, bounded against loops.
        for _ in 0..16 {
            let Some(reference) = &schema.reference else {
                return Some(schema);
            };
            let target = reference
                .strip_prefix("#/definitions/")
                .and_then(|name| self.definitions.get(name));
            match target {
                Some(target) => schema = target,
                None => {
                    violations.push(Violation {
                        at: at.to_owned(),
                        problem: format!("the schema refers to {reference:?}, which is not defined"),
                    });
                    return None;
                }
            }
        }
        violations.push(Violation {
            at: at.to_owned(),
            problem: "the schema's references loop".to_owned(),
        });
        None
    }

    fn check(&self, schema: &Schema, value: &Value, at: &str, violations: &mut Vec<Violation>) {
        let Some(schema) = self.resolve(schema, at, violations) else {
            return;
        };
        let mut problem = |problem: String| {
            violations.push(Violation {
                at: at.to_owned(),
                problem,
            });
        };
        let kind = schema
            .kind
            .as_deref()
            .or_else(|| (!schema.properties.is_empty() || !schema.required.is_empty()).then_some("object"));
        if let Some(kind) = kind {
            let matches = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                other => {
                    problem(format!("the schema's type {other:?} is not understood"));
                    return;
                }
            };
            if !matches {
                problem(format!("expected {} {kind}, found {}", article(kind), describe(value)));
                return;
            }
        }
        if let Some(allowed) = &schema.allowed {
            if !allowed.contains(value) {
                let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
                problem(format!("{value} is not one of {}", names.join(", ")));
            }
        }
        if let Some(number) = value.as_f64() {
            if let Some(minimum) = schema.minimum.filter(|m| number < *m) {
                problem(format!("{value} is below the minimum {minimum}"));
            }
            if let Some(maximum) = schema.maximum.filter(|m| number > *m) {
                problem(format!("{value} is above the maximum {maximum}"));
            }
        }
        match value {
            Value::Object(map) => {
                for name in &schema.required {
                    if !map.contains_key(name) {
                        problem(format!("the required field {name:?} is missing"));
                    }
                }
                for (key, field) in map {
                    match schema.properties.get(key) {
                        Some(field_schema) => {
                            self.check(field_schema, field, &format!("{at}.{key}"), violations);
                        }
                        None if schema.additional_properties == Some(true) => {}
                        None => violations.push(Violation {
                            at: format!("{at}.{key}"),
                            problem: "unknown field (the schema does not list it)".to_owned(),
                        }),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = &schema.items {
                    for (index, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{at}[{index}]"), violations);
                    }
                }
            }
            _ => {}
        }
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn description() -> ApiDescription {
        let definitions = json!({
            "Thing": {
                "type": "object",
                "required": ["id", "size"],
                "properties": {
                    "id": {"type": "string"},
                    "size": {"type": "integer", "minimum": 1, "maximum": 8},
                    "mode": {"type": "string", "enum": ["Fast", "Slow"]},
                    "parts": {"type": "array", "items": {"$ref": "#/definitions/Part"}}
                }
            },
            "Part": {"type": "object", "properties": {"on": {"type": "boolean"}}},
            "Open": {"type": "object", "additionalProperties": true}
        });
        ApiDescription {
            info: Info { version: "test".into() },
            definitions: serde_json::from_value(definitions).unwrap(),
            paths: BTreeMap::new(),
        }
    }

    #[test]
    fn accepts_a_matching_value() {
        let api = description();
        let value = json!({"id": "a", "size": 2, "mode": "Fast", "parts": [{"on": true}]});
        assert_eq!(api.validate("Thing", &value), Ok(()));
        assert_eq!(api.validate("Open", &json!({"anything": [1]})), Ok(()));
    }

    #[test]
    fn names_every_violation_by_path() {
        let api = description();
        let value = json!({"size": 9.5, "mode": "Medium", "parts": [{"on": "yes", "off": 1}], "colour": "red"});
        let error = api.validate("Thing", &value).unwrap_err();
        let found: Vec<String> = error.violations.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "$: the required field \"id\" is missing",
                "$.colour: unknown field (the schema does not list it)",
                "$.mode: \"Medium\" is not one of \"Fast\", \"Slow\"",
                "$.parts[0].off: unknown field (the schema does not list it)",
                "$.parts[0].on: expected a boolean, found the string \"yes\"",
                "$.size: expected an integer, found the number 9.5",
            ]
        );
        let below = api.validate("Thing", &json!({"id": "a", "size": 0})).unwrap_err();
        assert_eq!(below.violations[0].to_string(), "$.size: 0 is below the minimum 1");
        assert!(
            api.validate("Missing", &json!({}))
                .unwrap_err()
                .to_string()
                .contains("not defined")
        );
    }

    #[test]
    fn templated_paths_match_concrete_ones() {
        assert!(path_matches("/drives/{drive_id}", "/drives/root"));
        assert!(!path_matches("/drives/{drive_id}", "/drives"));
        assert!(path_matches("/", "/"));
        assert!(!path_matches("/", "/actions"));
    }
}
