//! Reading the fields of a JSON object body, naming every problem at once: unknown fields,
//! wrong JSON types, and (by the caller) the domain rules on the fields whose types are right.
//! POST /rooms and PATCH /rooms/{id}/settings read their bodies with it.

use aggregates::FieldViolation;
use serde_json::{Map, Number, Value};

use super::body::json_type;
use super::ApiError;

/// What `null` means in a body.
#[derive(Clone, Copy)]
pub enum Nulls {
    /// The field counts as absent (POST /rooms: the default applies).
    Absent,
    /// The field is invalid (PATCH: "set this to null" means nothing).
    Rejected,
}

pub struct Fields {
    body: Map<String, Value>,
    nulls: Nulls,
    violations: Vec<FieldViolation>,
}

impl Fields {
    pub fn new(body: Map<String, Value>, nulls: Nulls) -> Self {
        Self {
            body,
            nulls,
            violations: Vec::new(),
        }
    }

    pub fn string(&mut self, field: &str) -> Option<String> {
        self.take(field, "a string", |value| match value {
            Value::String(text) => Some(text),
            _ => None,
        })
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        self.take(field, "a boolean", |value| value.as_bool())
    }

    /// An integer as JSON Schema counts them: `22.0` is 22.
    pub fn integer(&mut self, field: &str) -> Option<i64> {
        let number = self.take(field, "an integer", |value| match value {
            Value::Number(n) => Some(n),
            _ => None,
        })?;
        let integer = integer(&number);
        if integer.is_none() {
            self.violations.push(FieldViolation::new(
                field,
                format!("must be an integer, not {number}"),
            ));
        }
        integer
    }

    /// Adds violations found by the caller (domain rules on well-typed fields).
    pub fn extend(&mut self, violations: impl IntoIterator<Item = FieldViolation>) {
        self.violations.extend(violations);
    }

    /// Every field not read is unknown; then every violation, or none.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown = std::mem::take(&mut self.body);
        self.violations.extend(
            unknown
                .into_iter()
                .map(|(field, _)| FieldViolation::new(field, "is not a known field")),
        );
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.violations))
        }
    }

    fn take<T>(
        &mut self,
        field: &str,
        expected: &str,
        read: impl FnOnce(Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.body.remove(field)?;
        if value.is_null() {
            if let Nulls::Rejected = self.nulls {
                self.violations.push(FieldViolation::new(
                    field,
                    format!("must be {expected}, not null"),
                ));
            }
            return None;
        }
        let kind = json_type(&value);
        let read = read(value);
        if read.is_none() {
            self.violations.push(FieldViolation::new(
                field,
                format!("must be {expected}, not {kind}"),
            ));
        }
        read
    }
}

/// The integer a JSON number stands for: `22.0` is 22. Integers beyond i64 saturate (they are
/// out of any range all the same); fractions are `None`.
fn integer(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0).then_some(f as i64)
}

/// A name people see, as a pattern for clients (aggregates::text has the rule, with the
/// joiners that emoji and some scripts need, which the pattern leaves out): at least one visible
/// character, no control, bidirectional or invisible format character.
pub const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u2028-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}]*[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u2028-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}][^\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u2028-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}]*$";

/// Puts [`NAME_PATTERN`] on the request fields that are names people see (a derive's `pattern`
/// takes only a literal, and the pattern is long).
pub struct NamePatterns;

impl utoipa::Modify for NamePatterns {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Object, Schema};
        use utoipa::openapi::RefOr;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (schema, field) in [
            ("CreateRoomRequest", "name"),
            ("JoinRequest", "displayName"),
        ] {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
                continue;
            };
            if let Some(RefOr::T(Schema::Object(Object { pattern, .. }))) =
                object.properties.get_mut(field)
            {
                *pattern = Some(NAME_PATTERN.to_owned());
            }
        }
    }
}
