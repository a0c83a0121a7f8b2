//! Event timestamps as the API writes them: UTC, RFC 3339, always with milliseconds and `Z`
//! (`2026-03-03T10:30:00.000Z`). chrono's own format drops the fraction on a whole second,
//! which subscribers would have to special-case and which does not sort as text.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Any RFC 3339 time (events stored before this format was fixed have fewer digits).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct At(#[serde(with = "super")] chrono::DateTime<chrono::Utc>);

    #[test]
    fn a_whole_second_keeps_its_milliseconds() {
        let at = At(chrono::Utc.with_ymd_and_hms(2026, 3, 3, 10, 30, 0).unwrap());
        let json = serde_json::to_string(&at).unwrap();
        assert_eq!(json, "\"2026-03-03T10:30:00.000Z\"");
        assert_eq!(serde_json::from_str::<At>(&json).unwrap(), at);
        assert_eq!(
            serde_json::from_str::<At>("\"2026-03-03T10:30:00Z\"").unwrap(),
            at
        );
    }
}
