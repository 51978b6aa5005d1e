//! A fast, non-cryptographic hasher (the one rustc uses internally, "FxHash") for the maps and
//! sets a sync builds over thousands of endpoints: their keys (pod IPs, UIDs, Node names) are
//! not chosen by whoever could make them collide, and SipHash, std's default, was a fifth of a
//! full sync's instructions.

use std::hash::{BuildHasherDefault, Hasher};

/// The hasher's state.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if let Some((word, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*word)));
            bytes = rest;
        }
        for byte in bytes {
            self.add(u64::from(*byte));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FxHasher`]s: `HashMap<K, V, FastHash>`.
pub(crate) type FastHash = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    fn hash(value: impl Hash) -> u64 {
        FastHash::default().hash_one(value)
    }

    #[test]
    fn equal_values_hash_equal_and_near_ones_apart() {
        assert_eq!(hash(("10.0.0.1", "uid-a")), hash(("10.0.0.1", "uid-a")));
        assert_ne!(hash(("10.0.0.1", "uid-a")), hash(("10.0.0.2", "uid-a")));
        assert_ne!(hash(("ab", "c")), hash(("a", "bc")));
        assert_ne!(hash([0u8; 3].as_slice()), hash([0u8; 4].as_slice()));
    }
}
