//! The in-memory Bloom filter of the ingest writer's dedupe ([`super::Dedupe`]): it says
//! "certainly not flushed" for almost every new key, so the writer reads the sorted key runs
//! ([`super::runs`]) only for duplicates, retries and about 0.2% false positives.
//!
//! Blocked: all six probes of a key fall in one 512-bit block (one cache line), and the table
//! asks Linux for huge pages. This is measured hot-path code, kept hand-written on purpose: a
//! general-purpose Bloom crate costs a cache miss per probe instead of one per key, and the
//! writer probes every event of a request in one warming pass ([`Bloom::warm`]); figure 1 of
//! `cargo bench --bench pipeline` (library ingest, exact dedupe) measures it. It holds only
//! hashes of committed runs; it is derived state, rebuilt from `key_blocks` at writer start.

/// Bloom filter bits per key; 16 bits with 6 probes in one cache line: ~0.1–0.3% false positives.
const BLOOM_BITS_PER_KEY: usize = 16;
/// Keys the Bloom filter is first sized for (8 MiB); it is rebuilt twice as large when full.
const BLOOM_MIN_KEYS: usize = 4 << 20;

/// A blocked Bloom filter: all probes of a key fall in one 512-bit block.
pub(super) struct Bloom {
    blocks: Vec<[u64; 8]>,
    /// Hashes inserted.
    pub(super) keys: usize,
    /// Hashes it was sized for; past it the filter is rebuilt twice as large.
    pub(super) capacity: usize,
}

impl Bloom {
    pub(super) fn with_capacity(keys: usize) -> Bloom {
        let capacity = keys.max(BLOOM_MIN_KEYS);
        let blocks = vec![[0; 8]; (capacity * BLOOM_BITS_PER_KEY).div_ceil(512)];
        advise_huge_pages(&blocks);
        Bloom { blocks, keys: 0, capacity }
    }

    /// Loads the blocks of `hashes` into the cache: a loop of independent loads, so the misses
    /// overlap; the probes that follow then hit the cache.
    pub(super) fn warm(&self, hashes: impl Iterator<Item = i64>) -> u64 {
        hashes.fold(0, |acc, h| acc ^ self.blocks[self.probes(h).0][0])
    }

    fn probes(&self, h: i64) -> (usize, u64) {
        let h = h as u64;
        ((h % self.blocks.len() as u64) as usize, h.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub(super) fn insert(&mut self, h: i64) {
        let (b, mut bits) = self.probes(h);
        for _ in 0..6 {
            self.blocks[b][(bits & 7) as usize] |= 1 << ((bits >> 3) & 63);
            bits >>= 9;
        }
        self.keys += 1;
    }

    pub(super) fn may_contain(&self, h: i64) -> bool {
        let (b, mut bits) = self.probes(h);
        (0..6).all(|_| {
            let hit = self.blocks[b][(bits & 7) as usize] & (1 << ((bits >> 3) & 63)) != 0;
            bits >>= 9;
            hit
        })
    }
}

/// Asks Linux to back a large, random-access table with 2 MiB pages (a Bloom filter of tens of
/// MiB otherwise costs a TLB miss per probe as well as a cache miss). Advisory only.
fn advise_huge_pages<T>(table: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (ptr, len) = (table.as_ptr() as usize, std::mem::size_of_val(table));
        let (start, end) = (ptr.next_multiple_of(HUGE), (ptr + len) / HUGE * HUGE);
        if end > start {
            // SAFETY: the range lies inside memory this process owns; MADV_HUGEPAGE changes how it
            // is backed, never its contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = table;
}

#[cfg(test)]
mod tests {
    use super::super::runs::key_hash;
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_few_positives() {
        let mut b = Bloom::with_capacity(0);
        for i in 0..100_000 {
            b.insert(key_hash(1, &format!("in-{i}")));
        }
        assert!((0..100_000).all(|i| b.may_contain(key_hash(1, &format!("in-{i}")))));
        let fp = (0..100_000).filter(|i| b.may_contain(key_hash(1, &format!("out-{i}")))).count();
        assert!(fp < 1000, "{fp} false positives");
    }
}
