use std::fmt;

use serde::{Deserialize, Serialize};

/// A room code: three groups of three lowercase ASCII letters, `abc-def-ghi`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a room code is three groups of three lowercase letters, like abc-def-ghi")]
pub struct RoomCodeError;

impl RoomCode {
    /// Letters drawn per code (the dashes are fixed).
    pub const LETTERS: usize = 9;

    /// Builds a code from nine letter indices in 0..26, as drawn by a random generator.
    pub fn from_indices(indices: [u8; Self::LETTERS]) -> Result<Self, RoomCodeError> {
        let mut code = String::with_capacity(11);
        for (i, index) in indices.into_iter().enumerate() {
            if index >= 26 {
                return Err(RoomCodeError);
            }
            if i > 0 && i % 3 == 0 {
                code.push('-');
            }
            code.push(char::from(b'a' + index));
        }
        Ok(Self(code))
    }

    pub fn parse(text: &str) -> Result<Self, RoomCodeError> {
        let bytes = text.as_bytes();
        let well_formed = bytes.len() == 11
            && bytes.iter().enumerate().all(|(i, b)| match i {
                3 | 7 => *b == b'-',
                _ => b.is_ascii_lowercase(),
            });
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            Err(RoomCodeError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomCode {
    type Error = RoomCodeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<RoomCode> for String {
    fn from(code: RoomCode) -> Self {
        code.0
    }
}

impl fmt::Display for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_codes_from_indices() {
        let code = RoomCode::from_indices([0, 1, 2, 3, 4, 5, 23, 24, 25]).unwrap();
        assert_eq!(code.as_str(), "abc-def-xyz");
        assert_eq!(
            RoomCode::from_indices([26, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RoomCodeError)
        );
    }

    #[test]
    fn parses_only_the_documented_format() {
        assert!(RoomCode::parse("abc-def-ghi").is_ok());
        for bad in [
            "",
            "abc-def-gh",
            "abcdefghi",
            "ABC-def-ghi",
            "abc_def_ghi",
            "abc-def-ghij",
            "ab1-def-ghi",
            "äbc-def-gh",
        ] {
            assert_eq!(RoomCode::parse(bad), Err(RoomCodeError), "{bad:?}");
        }
    }
}
