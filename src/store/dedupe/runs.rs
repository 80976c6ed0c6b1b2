//! The sorted key runs of the ingest writer's dedupe ([`super::Dedupe`]): the on-disk half.
//!
//! Every [`super::FLUSH_EVENTS`] events the writer writes the keys appended since the last
//! flush, *sorted by hash*, as one run `gen`: packed [`BLOCK_KEYS`] to a row of `key_blocks`
//! (`gen`, `first_hash`, `base_seq`, `keys` = entries of [`ENTRY`] bytes: the hash as i64 LE
//! and `seq - base_seq` as u32 LE), and one row of `key_runs` (`gen`, `keys`, `through_seq`).
//! A probe reads, per run, the one block whose `first_hash` is the greatest not above the hash,
//! and binary-searches it. Equal hashes never straddle two blocks. Seqs found are candidates
//! only; the caller verifies them against `events`.

use crate::store::{Result, StoreError};
use rusqlite::{params, Connection};

/// Keys per `key_blocks` row: 320 × 12 bytes fit one 4 KiB page with the row's other fields.
pub const BLOCK_KEYS: usize = 320;
/// Bytes per packed key: the hash (i64 LE) and `seq - base_seq` (u32 LE).
pub(super) const ENTRY: usize = 12;

/// The stable 64-bit hash of an event key, `(instance key, event id)`: stored in every
/// `key_blocks` row, so it must never change (a changed hash would stop finding every flushed
/// key, and duplicates would be stored twice). The golden test below pins its values.
pub fn key_hash(instance_key: i64, event_id: &str) -> i64 {
    // FNV-1a over the instance key and the id, then a strong finaliser (splitmix64).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_key.to_le_bytes().iter().chain(event_id.as_bytes()) {
        h = (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)) as i64
}

/// (runs, keys in them, last seq they cover).
pub(super) fn runs(conn: &Connection) -> Result<(i64, i64, i64)> {
    Ok(conn.query_row("SELECT count(*), coalesce(sum(keys), 0), coalesce(max(through_seq), 0) FROM key_runs", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?)
}

/// A packed entry: (hash, seq offset).
pub(super) fn entry(e: &[u8]) -> (i64, u32) {
    let (h, off) = e.split_at(8);
    (i64::from_le_bytes(h.try_into().expect("8 bytes")), u32::from_le_bytes(off.try_into().expect("4 bytes")))
}

/// Cuts a sorted run into blocks of about [`BLOCK_KEYS`] entries: (first hash, base seq,
/// packed entries). Equal hashes are never split over two blocks.
pub(super) fn pack_run(run: &[(i64, i64)]) -> Result<Vec<(i64, i64, Vec<u8>)>> {
    let mut blocks = Vec::with_capacity(run.len() / BLOCK_KEYS + 1);
    let mut rest = run;
    while !rest.is_empty() {
        let mut n = rest.len().min(BLOCK_KEYS);
        while n < rest.len() && rest[n].0 == rest[n - 1].0 {
            n += 1;
        }
        let (block, tail) = rest.split_at(n);
        let base = block.iter().map(|e| e.1).min().expect("non-empty block");
        let mut blob = Vec::with_capacity(block.len() * ENTRY);
        for (h, seq) in block {
            let off = u32::try_from(seq - base).map_err(|_| StoreError::Internal("a dedupe block spans more than 2^32 events".into()))?;
            blob.extend_from_slice(&h.to_le_bytes());
            blob.extend_from_slice(&off.to_le_bytes());
        }
        blocks.push((block[0].0, base, blob));
        rest = tail;
    }
    Ok(blocks)
}

/// Adds the seqs of the entries of one packed block whose hash is `h` to `out`.
pub(super) fn search_block(blob: &[u8], base: i64, h: i64, out: &mut Vec<i64>) {
    let n = blob.len() / ENTRY;
    let at = |i: usize| entry(&blob[i * ENTRY..(i + 1) * ENTRY]);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if at(mid).0 < h {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    out.extend((lo..n).map(at).take_while(|(k, _)| *k == h).map(|(_, off)| base + off as i64));
}

/// Adds the seqs of runs `0..gens` whose key hash is `h` to `out`.
pub(super) fn probe_runs(conn: &Connection, gens: i64, h: i64, out: &mut Vec<i64>) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("SELECT base_seq, keys FROM key_blocks WHERE gen = ?1 AND first_hash <= ?2 ORDER BY first_hash DESC LIMIT 1")?;
    for gen in 0..gens {
        let mut rows = stmt.query(params![gen, h])?;
        let Some(r) = rows.next()? else { continue };
        let base: i64 = r.get(0)?;
        let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        if blob.len() % ENTRY != 0 {
            return Err(StoreError::Corrupt(format!("key block of run {gen} has {} bytes", blob.len())));
        }
        search_block(blob, base, h, out);
    }
    Ok(())
}

/// Every hash of runs `from_gen..`, in no particular order (to fill the Bloom filter).
pub(super) fn each_hash(conn: &Connection, from_gen: i64, mut f: impl FnMut(i64)) -> Result<()> {
    let mut stmt = conn.prepare("SELECT keys FROM key_blocks WHERE gen >= ?1")?;
    let mut rows = stmt.query([from_gen])?;
    while let Some(r) = rows.next()? {
        for e in r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?.chunks_exact(ENTRY) {
            f(entry(e).0);
        }
    }
    Ok(())
}

/// Writes `run` (sorted (hash, seq) pairs) as run `gen`, covering every event up to `through`.
pub(super) fn write(conn: &Connection, gen: i64, run: &[(i64, i64)], through: i64) -> Result<()> {
    let mut stmt = conn.prepare_cached("INSERT INTO key_blocks (gen, first_hash, base_seq, keys) VALUES (?1, ?2, ?3, ?4)")?;
    for (first_hash, base, blob) in pack_run(run)? {
        stmt.execute(params![gen, first_hash, base, blob])?;
    }
    conn.prepare_cached("INSERT INTO key_runs (gen, keys, through_seq) VALUES (?1, ?2, ?3)")?.execute(params![
        gen,
        run.len() as i64,
        through
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_hash_never_changes() {
        // Golden values: these hashes are on disk in every store's `key_blocks`. If this test
        // fails, the hash changed and existing stores would store resent events twice; restore
        // the function, never these values.
        assert_eq!(key_hash(1, ""), 6676229981160887125);
        assert_eq!(key_hash(1, "e1"), -7492724474692935621);
        assert_eq!(key_hash(42, "0b6e7c1a-3f2d-4c9e-9a51-7d2f8e4b6c10"), 3234278504916266590);
        assert_eq!(key_hash(-7, "id with spaces ~"), -8696385734756701521);
        assert_eq!(key_hash(i64::MAX, "x"), 206851162672732663);
    }

    #[test]
    fn packed_blocks_never_split_equal_hashes_and_find_every_entry() {
        // 1000 sorted entries; hash 6300 repeats over indexes 630..650, across the boundary of
        // the second and third block (a 64-bit collision).
        let run: Vec<(i64, i64)> = (0..1000).map(|i| (if (630..650).contains(&i) { 6300 } else { i * 10 }, 100 + i)).collect();
        assert!(run.windows(2).all(|w| w[0] <= w[1]));
        let blocks = pack_run(&run).unwrap();
        assert!(blocks.len() >= 3);
        assert_eq!(blocks.iter().map(|b| b.2.len() / ENTRY).sum::<usize>(), 1000);
        let holding: Vec<_> = blocks.iter().filter(|b| b.2.chunks_exact(ENTRY).any(|e| entry(e).0 == 6300)).collect();
        assert_eq!(holding.len(), 1, "equal hashes stay in one block");
        for &(h, seq) in &run {
            // The block a probe reads: greatest first_hash <= h.
            let b = blocks.iter().rev().find(|b| b.0 <= h).unwrap();
            let mut out = Vec::new();
            search_block(&b.2, b.1, h, &mut out);
            assert!(out.contains(&seq), "{h} → {seq}");
            assert_eq!(out.len(), if h == 6300 { 20 } else { 1 });
        }
        let mut none = Vec::new();
        search_block(&blocks[0].2, blocks[0].1, 5, &mut none);
        assert!(none.is_empty());
    }
}
