//! The pool's free addresses as a hierarchical bitmap ([`FreeSet`]): finding the next free
//! address costs at most three 64-bit words per level, whatever the number of live leases.

use alloc::vec;
use alloc::vec::Vec;

/// A set of indices below `size` as a hierarchical bitmap: level 0 has one bit per index (set =
/// free), each level above one bit per word of the level below (set = that word is not empty).
#[derive(Debug, Clone)]
pub(super) struct FreeSet {
    levels: Vec<Vec<u64>>,
}

impl FreeSet {
    /// Every index below `size` present.
    pub(super) fn full(size: u32) -> FreeSet {
        let mut levels = Vec::new();
        let mut bits = size as usize;
        loop {
            let words = bits.div_ceil(64).max(1);
            let mut level = vec![u64::MAX; words];
            if let Some(last) = level.last_mut() {
                let rem = bits % 64;
                if rem != 0 {
                    *last = (1u64 << rem) - 1;
                }
                if bits == 0 {
                    *last = 0;
                }
            }
            levels.push(level);
            if words == 1 {
                break;
            }
            bits = words;
        }
        FreeSet { levels }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.capacity() * 8).sum::<usize>()
            + self.levels.capacity() * core::mem::size_of::<Vec<u64>>()
    }

    pub(super) fn contains(&self, idx: u32) -> bool {
        let i = idx as usize;
        self.levels
            .first()
            .and_then(|l| l.get(i / 64))
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(super) fn insert(&mut self, idx: u32) {
        let mut i = idx as usize;
        for level in &mut self.levels {
            let Some(word) = level.get_mut(i / 64) else {
                return;
            };
            let was_empty = *word == 0;
            *word |= 1 << (i % 64);
            if !was_empty {
                return;
            }
            i /= 64;
        }
    }

    pub(super) fn remove(&mut self, idx: u32) {
        let mut i = idx as usize;
        for level in &mut self.levels {
            let Some(word) = level.get_mut(i / 64) else {
                return;
            };
            *word &= !(1 << (i % 64));
            if *word != 0 {
                return;
            }
            i /= 64;
        }
    }

    /// The smallest present index `>= from`.
    pub(super) fn find_from(&self, from: u32) -> Option<u32> {
        self.find(0, from as usize)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn find(&self, level: usize, from: usize) -> Option<usize> {
        let words = self.levels.get(level)?;
        let w = from / 64;
        let word = *words.get(w)?;
        let masked = word & (u64::MAX << (from % 64));
        if masked != 0 {
            return Some(w * 64 + masked.trailing_zeros() as usize);
        }
        // The next non-empty word of this level, from the level above (the top level is one word).
        let next = self.find(level + 1, w + 1)?;
        let word = *words.get(next)?;
        (word != 0).then(|| next * 64 + word.trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_set_finds_across_levels() {
        let mut f = FreeSet::full(70_000);
        assert_eq!(f.levels.len(), 3);
        for i in 0..70_000 {
            f.remove(i);
        }
        assert_eq!(f.find_from(0), None);
        f.insert(69_999);
        f.insert(5);
        assert_eq!(f.find_from(0), Some(5));
        assert_eq!(f.find_from(6), Some(69_999));
        assert_eq!(f.find_from(70_000), None);
        f.remove(69_999);
        assert_eq!(f.find_from(6), None);
    }

    #[test]
    fn free_set_edges() {
        for size in [1u32, 63, 64, 65, 4095, 4096, 4097, 262_144] {
            let mut f = FreeSet::full(size);
            assert_eq!(f.find_from(0), Some(0));
            assert_eq!(f.find_from(size - 1), Some(size - 1));
            assert_eq!(f.find_from(size), None);
            for i in 0..size {
                f.remove(i);
            }
            assert_eq!(f.find_from(0), None, "size {size}");
        }
    }
}
