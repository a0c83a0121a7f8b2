//! Reading query parameters, naming every problem at once: unknown or repeated parameters and
//! values out of their range. Listing endpoints read their queries with it.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use aggregates::FieldViolation;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

use super::ApiError;

pub type RawParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// More parameters than any endpoint takes, by far: a longer query string is a mistake or an
/// attack, refused whole rather than answered with a problem naming each of its parameters.
const MAX_PARAMS: usize = 32;

pub struct Params {
    pairs: Vec<(String, String)>,
    violations: Vec<FieldViolation>,
}

impl Params {
    pub fn new(raw: RawParams) -> Result<Self, ApiError> {
        let Query(pairs) =
            raw.map_err(|e| ApiError::BadRequest(format!("the query string is malformed: {e}")))?;
        if pairs.len() > MAX_PARAMS {
            return Err(ApiError::BadRequest(format!(
                "the query string has {} parameters; at most {MAX_PARAMS} are accepted",
                pairs.len()
            )));
        }
        Ok(Self {
            pairs,
            violations: Vec::new(),
        })
    }

    /// The value of `name`, if given once.
    pub fn text(&mut self, name: &str) -> Option<String> {
        let mut values = Vec::new();
        self.pairs.retain(|(key, value)| {
            let found = key == name;
            if found {
                values.push(value.clone());
            }
            !found
        });
        if values.len() > 1 {
            self.violations
                .push(FieldViolation::new(name, "must be given at most once"));
            return None;
        }
        values.pop()
    }

    pub fn integer(&mut self, name: &str, range: RangeInclusive<i64>, default: i64) -> i64 {
        let Some(text) = self.text(name) else {
            return default;
        };
        match text.parse::<i64>() {
            Ok(value) if range.contains(&value) => value,
            _ => {
                self.violations.push(FieldViolation::new(
                    name,
                    format!(
                        "must be an integer from {} to {} (got {text:?})",
                        range.start(),
                        range.end()
                    ),
                ));
                default
            }
        }
    }

    pub fn one_of(
        &mut self,
        name: &str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let Some(text) = self.text(name) else {
            return default;
        };
        match allowed.iter().find(|a| **a == text) {
            Some(value) => value,
            None => {
                self.violations.push(FieldViolation::new(
                    name,
                    format!("must be one of {} (got {text:?})", allowed.join(", ")),
                ));
                default
            }
        }
    }

    /// Adds a violation found by the caller.
    pub fn invalid(&mut self, name: &str, message: impl Into<String>) {
        self.violations.push(FieldViolation::new(name, message));
    }

    /// Every parameter not read is unknown; then every violation, or none.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown = std::mem::take(&mut self.pairs);
        let mut named: HashSet<String> = self.violations.iter().map(|v| v.field.clone()).collect();
        for (name, _) in unknown {
            if named.insert(name.clone()) {
                self.violations
                    .push(FieldViolation::new(name, "is not a known parameter"));
            }
        }
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.violations))
        }
    }
}

/// Cuts a page read with one item more than asked (`limit + 1`, to learn whether another page
/// follows) back to `limit`; the page's last item when another page follows.
pub fn next_page_after<T>(items: &mut Vec<T>, limit: i64) -> Option<&T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    items.last().filter(|_| more)
}
