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
        for index in &mut indices {
            *index = loop {
                let byte = OsRng
                    .try_next_u32()
                    .expect("the OS random generator failed") as u8;
                // 234 = 9 * 26: bytes at or above it would favour the first letters.
                if byte < 234 {
                    break byte % 26;
                }
            };
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
}
