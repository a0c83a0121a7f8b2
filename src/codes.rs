//! Where room codes come from.

use aggregates::RoomCode;
use rand::rngs::OsRng;
use rand::TryRngCore;

/// Draws room codes. Replaceable so that tests can force collisions.
pub trait CodeGenerator: Send + Sync + 'static {
    fn draw(&self) -> RoomCode;
}

/// Nine letters from the operating system's cryptographically secure generator, each uniform
/// over a-z (rejection sampling: no modulo bias).
pub struct SecureCodes;

impl CodeGenerator for SecureCodes {
    fn draw(&self) -> RoomCode {
        let mut indices = [0u8; RoomCode::LETTERS];
        let mut filled = 0;
        // One read of the OS generator usually suffices: 32 bytes for 9 letters, of which about
        // 9% are rejected.
        while filled < indices.len() {
            let mut bytes = [0u8; 32];
            OsRng
                .try_fill_bytes(&mut bytes)
                .expect("the OS random generator failed");
            // 234 = 9 * 26: bytes at or above it would favour the first letters.
            for byte in bytes.into_iter().filter(|b| *b < 234) {
                if filled == indices.len() {
                    break;
                }
                indices[filled] = byte % 26;
                filled += 1;
            }
        }
        RoomCode::from_indices(indices).expect("indices are below 26")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_well_formed_varied_codes() {
        let codes: std::collections::HashSet<_> = (0..1000).map(|_| SecureCodes.draw()).collect();
        assert!(codes.iter().all(|c| RoomCode::parse(c.as_str()).is_ok()));
        assert!(
            codes.len() > 990,
            "only {} distinct codes in 1000 draws",
            codes.len()
        );
    }

    /// Without rejection sampling, `byte % 26` would draw w..z about 8.6% less often.
    #[test]
    fn letters_are_uniform() {
        let mut counts = [0u32; 26];
        for _ in 0..100_000 {
            for letter in SecureCodes
                .draw()
                .as_str()
                .bytes()
                .filter(u8::is_ascii_lowercase)
            {
                counts[usize::from(letter - b'a')] += 1;
            }
        }
        let expected = 900_000.0 / 26.0;
        for (letter, count) in counts.iter().enumerate() {
            let deviation = (f64::from(*count) - expected).abs() / expected;
            // Standard deviation is about 0.5%: 3% is far beyond chance, well below the bias.
            assert!(
                deviation < 0.03,
                "letter {} drawn {count} times",
                char::from(b'a' + letter as u8)
            );
        }
    }
}
