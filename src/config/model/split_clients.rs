//! `split_clients` blocks (ngx_http_split_clients_module): a variable that
//! splits requests by a hash of a value, for A/B tests and gradual
//! rollouts. The hash is MurmurHash2, as in nginx, so a given value lands
//! in the same part under both servers.

use crate::config::error::Span;
use crate::config::template::Template;

/// One `split_clients` block.
#[derive(Debug)]
pub struct SplitDef {
    /// The value hashed.
    pub source: Template,
    /// `(bound, value)` in order: a hash below `bound` takes the value;
    /// bound 0 takes every hash (`*`, or the part that completes 100%).
    pub parts: Vec<(u32, Box<[u8]>)>,
    /// The variable it defines, without `$`.
    pub output: String,
    /// Where the block starts.
    pub span: Span,
}

impl SplitDef {
    /// The value for the rendered source; empty when the parts add up to
    /// less than 100% and the hash falls past them.
    pub fn lookup(&self, source: &[u8]) -> &[u8] {
        let hash = murmur_hash2(source);
        self.parts
            .iter()
            .find(|(bound, _)| hash < *bound || *bound == 0)
            .map_or(&[][..], |(_, v)| v)
    }
}

/// Turns percentages in hundredths (`0` for `*`) into the bounds of
/// [`SplitDef::parts`]: cumulative shares of the 32-bit hash space. `None`
/// when they add up to more than 100%.
pub fn split_bounds(hundredths: &[u32]) -> Option<Vec<u32>> {
    let (mut sum, mut last) = (0u32, 0u32);
    let mut out = Vec::with_capacity(hundredths.len());
    for &p in hundredths {
        sum = if p == 0 { 10_000 } else { sum + p };
        if sum > 10_000 {
            return None;
        }
        if sum == 10_000 || p == 0 {
            out.push(0);
        } else {
            last = last.wrapping_add((u64::from(p) * 0xffff_ffff / 10_000) as u32);
            out.push(last);
        }
    }
    Some(out)
}

/// MurmurHash2 (32-bit, seed 0), byte order independent, as nginx's
/// `ngx_murmur_hash2`.
pub fn murmur_hash2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_hash2_matches_the_reference_values() {
        // MurmurHash2 with seed 0 (as nginx computes it, worked out apart
        // from this code).
        assert_eq!(murmur_hash2(b""), 0);
        assert_eq!(murmur_hash2(b"a"), 0x9268_5f5e);
        assert_eq!(murmur_hash2(b"abcd"), 0x2687_3021);
        assert_eq!(murmur_hash2(b"hello world"), 0x44a8_1419);
    }

    #[test]
    fn split_bounds_are_cumulative_and_the_rest_takes_all() {
        let b = split_bounds(&[5000, 2500, 0]).unwrap();
        assert_eq!(b[0], 2_147_483_647);
        assert_eq!(b[1], 2_147_483_647 + 1_073_741_823);
        assert_eq!(b[2], 0);
        // A part that completes 100% takes the rest too.
        assert_eq!(split_bounds(&[5000, 5000]).unwrap()[1], 0);
        assert_eq!(split_bounds(&[6000, 5000]), None);
    }
}
