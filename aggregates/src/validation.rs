use std::ops::RangeInclusive;

use crate::FieldViolation;

pub const DEFAULT_NAME: &str = "Meeting Room";
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DISPLAY_NAME_CHARS: usize = 50;
/// What a room shows for a host whose token carries no name it may show.
pub const HOST_NAME: &str = "Host";
pub const DEFAULT_MAX_PARTICIPANTS: i64 = 50;
pub const MAX_PARTICIPANTS_RANGE: RangeInclusive<i64> = 2..=100;

/// Every rule the client-supplied room fields break, in field order. `None` means "not sent".
///
/// Public so that the HTTP layer can name these violations alongside type errors in one
/// response; the aggregate applies the same function, so there is one set of rules.
pub fn validate_room_fields(
    name: Option<&str>,
    max_participants: Option<i64>,
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if let Some(name) = name {
        // Checked as it is stored: NFC, trimmed (crate::text).
        violations.extend(crate::text::violation(
            "name",
            &crate::text::normalized(name),
            MAX_NAME_CHARS,
        ));
    }
    if let Some(max) = max_participants {
        if !MAX_PARTICIPANTS_RANGE.contains(&max) {
            violations.push(FieldViolation::new(
                "maxParticipants",
                format!(
                    "must be an integer from {} to {} (got {max})",
                    MAX_PARTICIPANTS_RANGE.start(),
                    MAX_PARTICIPANTS_RANGE.end()
                ),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_name_length_in_characters() {
        let hundred_wide = "é".repeat(100);
        assert!(hundred_wide.len() > 100);
        assert!(validate_room_fields(Some(&hundred_wide), None).is_empty());
        let fields: Vec<_> = validate_room_fields(Some(&"é".repeat(101)), None)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["name"]);
    }

    #[test]
    fn names_every_failing_field() {
        let fields: Vec<_> = validate_room_fields(Some(""), Some(101))
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["name", "maxParticipants"]);
    }

    #[test]
    fn accepts_the_bounds() {
        for max in [2, 100] {
            assert!(validate_room_fields(Some("x"), Some(max)).is_empty());
        }
        for max in [i64::MIN, -1, 0, 1, 101, i64::MAX] {
            assert_eq!(validate_room_fields(None, Some(max)).len(), 1, "{max}");
        }
    }
}
