//! Names that people see (room names, display names): one form for one name, and nothing in
//! them that cannot be seen or that reorders what can.
//!
//! A name is NFC-normalised (the same letters always have the same code points, so a length
//! and a comparison mean the same for everyone) and trimmed. It may not be blank, and may not
//! contain:
//! - control characters (category Cc: NUL, CR, LF, tab, ...) or line and paragraph separators;
//! - format characters (category Cf): bidirectional embeddings, overrides, isolates and marks
//!   (U+202E turns "Ada" into what reads as another name), zero-width spaces and joiners, the
//!   soft hyphen, tags. Two are kept where scripts and emoji need them: ZERO WIDTH JOINER
//!   between two emoji (👩‍💻), ZERO WIDTH NON-JOINER between two letters (Persian, Indic
//!   scripts), and tag characters after a black flag (🏴 subdivision flags).
//!
//! Whether a member may call themselves "Ada (Host)": the API marks the host with `role`, and
//! clients show that; a name that ends with a host marker ("(Host)" and its translations) is
//! refused for anyone but the host ([`claims_to_host`]), so that one who shows names as given
//! cannot be fooled either.

use unicode_normalization::UnicodeNormalization;

use crate::FieldViolation;

/// `text` NFC-normalised and trimmed: the form a name is stored and compared in.
pub fn normalized(text: &str) -> String {
    text.nfc().collect::<String>().trim().to_owned()
}

/// The rule `text` (normalised) breaks as a name shown to people, if any.
pub fn violation(field: &str, text: &str, max_chars: usize) -> Option<FieldViolation> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Some(FieldViolation::new(field, "must not be blank"));
    }
    if chars.len() > max_chars {
        return Some(FieldViolation::new(
            field,
            format!(
                "must be at most {max_chars} characters long (got {})",
                chars.len()
            ),
        ));
    }
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        if let Some(kind) = refused(c, before, after) {
            return Some(FieldViolation::new(
                field,
                format!(
                    "must not contain {kind} (U+{:04X} at character {})",
                    c as u32,
                    i + 1
                ),
            ));
        }
    }
    None
}

/// `text` from an identity provider, made fit to show: normalised, with what a name may not
/// contain removed; `None` if nothing is left. (A provider's claim is not the caller's input
/// to refuse.)
pub fn sanitized(text: &str) -> Option<String> {
    let chars: Vec<char> = text.nfc().collect();
    let kept: String = chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            let before = i.checked_sub(1).map(|j| chars[j]);
            refused(c, before, chars.get(i + 1).copied()).is_none()
        })
        .map(|(_, &c)| c)
        .collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_owned())
}

/// Markers that say "the host" at the end of a name, lower-cased, in a few languages.
const HOST_MARKERS: &[&str] = &[
    "host",
    "the host",
    "co-host",
    "cohost",
    "moderator",
    "organizer",
    "organiser",
    "owner",
    "admin",
    "hôte",
    "anfitrión",
    "anfitrion",
    "anfitriã",
    "anfitrião",
    "gastgeber",
    "gastgeberin",
    "organisator",
    "moderatore",
    "organizzatore",
    "ospite",
    "gospodarz",
    "ведущий",
    "организатор",
    "主持人",
    "ホスト",
    "主催者",
    "호스트",
];

/// Whether `name` is or ends with a host marker: "Host", "(Host)", "[host]", "- Host",
/// "| Moderator", "(Anfitrión)" and the like, fullwidth forms included (compared in NFKC).
pub fn claims_to_host(name: &str) -> bool {
    let lower = name.nfkc().collect::<String>().to_lowercase();
    let trimmed = lower.trim_end();
    if HOST_MARKERS.contains(&trimmed.trim_start()) {
        return true;
    }
    let inner = trimmed
        .strip_suffix([')', ']', '）', '】', '}'])
        .map(str::trim_end);
    HOST_MARKERS.iter().any(|marker| {
        let before = match inner {
            Some(inner) => inner
                .strip_suffix(marker)
                .map(|rest| rest.trim_end().ends_with(['(', '[', '（', '【', '{'])),
            None => trimmed.strip_suffix(marker).map(|rest| {
                let rest = rest.trim_end();
                rest.ends_with(['-', '–', '—', '|', ':', '/', '·', '•'])
            }),
        };
        before == Some(true)
    })
}

/// `name` without a trailing host marker (a provider's name is cleaned, not refused).
pub fn without_host_marker(name: &str) -> String {
    let mut name = name.trim().to_owned();
    while claims_to_host(&name) {
        // Cut at the last bracket or separator, or drop the name when it is all marker.
        match name.rfind([
            '(', '[', '（', '【', '{', '-', '–', '—', '|', ':', '/', '·', '•',
        ]) {
            Some(cut) if cut > 0 => name = name[..cut].trim_end().to_owned(),
            _ => return String::new(),
        }
    }
    name
}

/// What kind of refused character `c` is, given its neighbours.
fn refused(c: char, before: Option<char>, after: Option<char>) -> Option<&'static str> {
    let u = c as u32;
    if c.is_control() {
        return Some("a control character");
    }
    // Letters that show as nothing: a name of them looks blank.
    if matches!(u, 0x115F | 0x1160 | 0x3164 | 0xFFA0 | 0x2800) {
        return Some("an invisible filler character");
    }
    if matches!(u, 0x2028 | 0x2029) {
        return Some("a line or paragraph separator");
    }
    if matches!(u, 0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C) {
        return Some("a bidirectional control character");
    }
    match u {
        0x200D if before.is_some_and(is_emoji) && after.is_some_and(is_emoji) => None,
        0x200C
            if before.is_some_and(char::is_alphabetic)
                && after.is_some_and(char::is_alphabetic) =>
        {
            None
        }
        0xE0020..=0xE007F if before.is_some_and(|b| b == '\u{1F3F4}' || is_tag(b)) => None,
        _ if is_format(u) => Some("an invisible formatting character"),
        _ => None,
    }
}

/// Unicode's format characters (general category Cf, Unicode 15.1).
fn is_format(u: u32) -> bool {
    matches!(
        u,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

fn is_tag(c: char) -> bool {
    matches!(c as u32, 0xE0020..=0xE007F)
}

/// Emoji that ZWJ sequences join (skin tones included), and the emoji variation selector.
fn is_emoji(c: char) -> bool {
    matches!(
        c as u32,
        0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x1F000..=0x1FAFF | 0xFE0F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Option<String> {
        violation("name", &normalized(text), 100).map(|v| v.message)
    }

    #[test]
    fn names_are_nfc_and_trimmed() {
        // "e" + COMBINING ACUTE ACCENT is "é" in NFC: one character, as the length counts.
        assert_eq!(normalized("  Cafe\u{301} "), "Café");
        assert_eq!(normalized("Café").chars().count(), 4);
        assert_eq!(normalized("Ada"), "Ada");
    }

    #[test]
    fn refuses_what_cannot_be_seen_or_reorders_what_can() {
        for (text, kind) in [
            ("", "blank"),
            ("   ", "blank"),
            ("Ada\u{202E}ecalevoL", "bidirectional"),
            ("Ada\u{2066}x\u{2069}", "bidirectional"),
            ("A\u{200B}da", "invisible"),
            ("Ad\u{00AD}a", "invisible"),
            ("A\u{FEFF}da", "invisible"),
            ("A\u{0}da", "control"),
            ("Ada\r\nLovelace", "control"),
            ("Ada\u{2028}Lovelace", "separator"),
            ("\u{3164}\u{3164}", "filler"),
        ] {
            let message = rule(text).unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert!(message.contains(kind), "{text:?}: {message}");
        }
        let long = "é".repeat(101);
        assert!(rule(&long).unwrap().contains("at most 100"));
    }

    #[test]
    fn keeps_the_joiners_that_scripts_and_emoji_need() {
        for text in [
            "Ada 👩\u{200D}💻",
            "👨\u{200D}👩\u{200D}👧",
            "می\u{200C}خواهم",
            "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}",
            "Zoë Ålander-Øst",
            "김민지",
        ] {
            assert_eq!(rule(text), None, "{text:?}");
        }
        assert!(rule("Ada\u{200D}").is_some());
        assert!(rule("A\u{200C}").is_some());
    }

    #[test]
    fn provider_names_are_cleaned_not_refused() {
        assert_eq!(
            sanitized(" Ada\u{202E} Lovelace\u{200B} ").as_deref(),
            Some("Ada Lovelace")
        );
        assert_eq!(sanitized("\u{200B}\u{202E} "), None);
    }

    #[test]
    fn host_markers_at_the_end_are_recognised() {
        for name in [
            "Ada Lovelace (Host)",
            "Ada (host) ",
            "Ada [HOST]",
            "Ada - Host",
            "Ada | Moderator",
            "Ada (Anfitrión)",
            "Ada（主持人）",
            "Ada (co-host)",
        ] {
            assert!(claims_to_host(name), "{name:?}");
        }
        assert!(claims_to_host("Host") && claims_to_host("Ada (Ｈｏｓｔ)"));
        assert_eq!(without_host_marker("Ada Lovelace (Host)"), "Ada Lovelace");
        assert_eq!(without_host_marker("Bob - Admin (host)"), "Bob");
        assert_eq!(without_host_marker("Host"), "");
        assert_eq!(without_host_marker("Zoë"), "Zoë");
        for name in ["Ghost", "Ada Host", "Ada (Hostess)", "Ada (ghost)", "Ada"] {
            assert!(!claims_to_host(name), "{name:?}");
        }
    }
}
