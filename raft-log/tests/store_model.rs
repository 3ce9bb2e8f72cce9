//! The mmap store against an in-memory model.
//!
//! Method: proptest draws a sequence of appends, truncations, purges, syncs, clean reopens and
//! crashes. A crash stops the store without its final sync and checkpoint, then zeroes the last
//! data segment from a random byte at or after the durable checkpoint — what a power cut does to
//! writes that never reached the disk. After every reopen the log must equal the model's prefix
//! of whole entries before the cut, and every entry must verify its CRC. A separate property
//! flips one byte inside a synced entry and expects the store to report it, naming the file.
//!
//! Failures print proptest's minimal case and seed (PROPTEST_SEED reruns it).

// Test and tool code: unwrapping is how a failure reports itself here, and the numeric
// casts are on small, known-range values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use raft_log::config::{FlushDiskType, StoreConfig};
use raft_log::error::StoreError;
use raft_log::store::{EntryKind, LogStore, NewEntry, TermIndex};

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: usize,
        size: usize,
        bump_term: bool,
    },
    Truncate {
        keep_fraction: f64,
    },
    Purge {
        fraction: f64,
    },
    Sync,
    Reopen,
    Crash {
        cut_fraction: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..40, 0usize..3000, any::<bool>()).prop_map(|(count, size, bump_term)| Op::Append { count, size, bump_term }),
        1 => (0.0f64..1.0).prop_map(|keep_fraction| Op::Truncate { keep_fraction }),
        1 => (0.0f64..1.1).prop_map(|fraction| Op::Purge { fraction }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        2 => (0.0f64..1.0).prop_map(|cut_fraction| Op::Crash { cut_fraction }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct ModelEntry {
    index: u64,
    term: u64,
    body: Vec<u8>,
}

struct Model {
    entries: Vec<ModelEntry>,
    purged: Option<TermIndex>,
    next_index: u64,
    term: u64,
}

impl Model {
    fn check(&self, store: &LogStore) {
        store.verify().expect("every present entry verifies");
        let state = store.log_state();
        assert_eq!(state.purged, self.purged, "purged");
        match (self.entries.first(), self.entries.last()) {
            (Some(f), Some(l)) => {
                assert_eq!(
                    state.entries,
                    Some((
                        f.index,
                        TermIndex {
                            term: l.term,
                            index: l.index
                        }
                    )),
                    "extent"
                );
            }
            _ => assert_eq!(state.entries, None, "empty log"),
        }
        for e in &self.entries {
            let got = store
                .read(e.index)
                .unwrap()
                .unwrap_or_else(|| panic!("entry {} missing", e.index));
            assert_eq!(
                (got.term, &got.body[..]),
                (e.term, &e.body[..]),
                "entry {}",
                e.index
            );
        }
    }
}

fn config(dir: &Path, flush: FlushDiskType) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.data_segment_bytes = 64 << 10;
    c.index_segment_bytes = 4096;
    c.entry_body_bytes_max = 8 << 10;
    c.flush_disk_type = flush;
    // Checkpoints only at explicit syncs and clean closes, so crashes have a tail to lose.
    c.checkpoint_interval = Duration::from_secs(3600);
    c.flush_interval = Duration::from_millis(5);
    c
}

fn body(index: u64, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (index as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// The durable position: what the last checkpoint covered (entries up to it survive any crash).
fn run(ops: Vec<Op>, flush: FlushDiskType) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), flush);
    let mut store = LogStore::open(cfg.clone()).unwrap();
    let mut model = Model {
        entries: Vec::new(),
        purged: None,
        next_index: 1,
        term: 1,
    };
    // The data-log position up to which a checkpoint covers the log: a crash never loses it.
    let mut durable_end: u64 = 0;
    for op in ops {
        match op {
            Op::Append {
                count,
                size,
                bump_term,
            } => {
                if bump_term {
                    model.term += 1;
                }
                let bodies: Vec<(u64, Vec<u8>)> = (0..count as u64)
                    .map(|i| (model.next_index + i, body(model.next_index + i, size)))
                    .collect();
                let new: Vec<NewEntry<'_>> = bodies
                    .iter()
                    .map(|(index, b)| NewEntry {
                        index: *index,
                        term: model.term,
                        kind: EntryKind::Normal,
                        body: b,
                    })
                    .collect();
                store.append(&new, None).unwrap();
                for (index, b) in bodies {
                    model.entries.push(ModelEntry {
                        index,
                        term: model.term,
                        body: b,
                    });
                }
                model.next_index += count as u64;
            }
            Op::Truncate { keep_fraction } => {
                if model.entries.is_empty() {
                    continue;
                }
                let keep = (model.entries.len() as f64 * keep_fraction) as usize;
                let last_kept = if keep == 0 {
                    None
                } else {
                    Some(model.entries[keep - 1].index)
                };
                // The next append continues where the first removed entry was: right after the
                // last kept one, or (nothing kept) at the old first index, which is the purge
                // point + 1 when there was a purge.
                let first_removed = model.entries[keep].index;
                store.truncate_after(last_kept).unwrap();
                model.entries.truncate(keep);
                model.next_index = first_removed;
                durable_end = durable_end.min(store.write_position());
            }
            Op::Purge { fraction } => {
                let Some(last) = model.entries.last().cloned() else {
                    continue;
                };
                let first = model.entries[0].index;
                let upto = first + ((last.index - first + 1) as f64 * fraction) as u64;
                if upto < first {
                    continue;
                }
                let term = model
                    .entries
                    .iter()
                    .find(|e| e.index == upto)
                    .map_or(last.term, |e| e.term);
                let p = TermIndex { term, index: upto };
                store.purge(p).unwrap();
                model.purged = Some(p);
                model.entries.retain(|e| e.index > upto);
                model.next_index = model.next_index.max(upto + 1);
            }
            Op::Sync => {
                store.sync().unwrap();
                durable_end = store.write_position();
            }
            Op::Reopen => {
                drop(store);
                store = LogStore::open(cfg.clone()).unwrap();
                durable_end = store.write_position();
            }
            Op::Crash { cut_fraction } => {
                // Where each surviving candidate ends, known before the crash.
                let ends: Vec<(u64, u64)> = model
                    .entries
                    .iter()
                    .map(|e| {
                        (
                            e.index,
                            store.position_of(e.index).unwrap() + 48 + e.body.len() as u64,
                        )
                    })
                    .collect();
                let segments = store.segments();
                store.simulate_crash();
                let Some(last_seg) = segments.last() else {
                    store = LogStore::open(cfg.clone()).unwrap();
                    continue;
                };
                let lo = durable_end.max(last_seg.start);
                let hi = last_seg.start + last_seg.size_bytes;
                let cut = lo + ((hi - lo) as f64 * cut_fraction) as u64;
                zero_from(&last_seg.path, cut - last_seg.start);
                store = LogStore::open(cfg.clone()).unwrap();
                model
                    .entries
                    .retain(|e| ends.iter().any(|(i, end)| *i == e.index && *end <= cut));
                model.next_index = model.entries.last().map_or(
                    model.purged.map_or(model.next_index, |p| p.index + 1),
                    |e| e.index + 1,
                );
                if model.entries.is_empty() && model.purged.is_none() {
                    // Nothing survived and nothing was purged: the store accepts any index.
                    model.next_index = model.next_index.max(1);
                }
            }
        }
        model.check(&store);
    }
}

fn zero_from(path: &Path, offset: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    if offset < len {
        f.write_all_at(&vec![0u8; (len - offset) as usize], offset)
            .unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_across_crashes_async_flush(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, FlushDiskType::AsyncFlush);
    }

    #[test]
    fn store_matches_model_across_crashes_sync_flush(ops in proptest::collection::vec(op(), 1..25)) {
        run(ops, FlushDiskType::SyncFlush);
    }

    #[test]
    fn flipped_byte_in_the_middle_is_reported_not_skipped(
        count in 20u64..200, size in 1usize..2000, victim_fraction in 0.0f64..0.9, byte_fraction in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), FlushDiskType::AsyncFlush);
        let store = LogStore::open(cfg.clone()).unwrap();
        let bodies: Vec<Vec<u8>> = (1..=count).map(|i| body(i, size)).collect();
        let new: Vec<NewEntry<'_>> = bodies.iter().enumerate()
            .map(|(i, b)| NewEntry { index: i as u64 + 1, term: 1, kind: EntryKind::Normal, body: b })
            .collect();
        store.append(&new, None).unwrap();
        let victim = 1 + ((count - 1) as f64 * victim_fraction) as u64;
        let position = store.position_of(victim).unwrap();
        let frame_len = 48 + size as u64;
        let byte = position + ((frame_len - 1) as f64 * byte_fraction) as u64;
        let seg = store.segments().into_iter().rev().find(|s| s.start <= byte).unwrap();
        drop(store);
        let f = OpenOptions::new().read(true).write(true).open(&seg.path).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, byte - seg.start).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], byte - seg.start).unwrap();
        drop(f);
        let err = match LogStore::open(cfg) {
            Err(e) => e,
            Ok(store) => store.verify().expect_err("a flipped byte must not verify"),
        };
        match err {
            StoreError::Corrupt { path, offset, .. } => {
                prop_assert_eq!(path, seg.path.clone());
                prop_assert_eq!(offset, position - seg.start);
            }
            other => prop_assert!(false, "expected Corrupt, got {other}"),
        }
    }
}

/// Regression: recovery used to read a segment's first index from its header without checking
/// the CRC, so a flipped bit in that field made the log silently start later.
#[test]
fn a_flipped_index_in_a_segments_first_entry_fails_open_instead_of_hiding_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), FlushDiskType::AsyncFlush);
    let store = LogStore::open(cfg.clone()).unwrap();
    let bodies: Vec<Vec<u8>> = (1..=50).map(|i| body(i, 100)).collect();
    let new: Vec<NewEntry<'_>> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| NewEntry {
            index: i as u64 + 1,
            term: 1,
            kind: EntryKind::Normal,
            body: b,
        })
        .collect();
    store.append(&new, None).unwrap();
    let first = store.segments()[0].path.clone();
    drop(store);
    // Byte 9 is the second byte of entry 1's index field: index 1 becomes 1 + 16 * 256.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&first)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 9).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], 9).unwrap();
    drop(f);
    match LogStore::open(cfg) {
        Err(StoreError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, first);
            assert_eq!(offset, 0);
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(store) => panic!("opened with a corrupt first entry: {:?}", store.log_state()),
    }
}
