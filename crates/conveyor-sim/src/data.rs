//! The simulated records: seeded from `(seed, index)` on the fly, plus the changes made since.
//!
//! A million records per entity are never materialized. Record `i` of an entity is a pure
//! function of the seed and `i`; its seeded change time grows with `i`, so "changed in (a, b]"
//! over seeded records is a contiguous index range found by binary search. Only created, updated
//! and deleted records are kept, in a `BTreeMap` ordered by index, and listings merge the two.
//! Listings are ordered by index (the record key), which keeps paging stable.

use std::collections::BTreeMap;

use conveyor_core::{Entity, ProfileKind};

/// The state of one record at listing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordState {
    /// The record's index (its key is derived from it).
    pub index: u64,
    /// Bumped by every change; seeded records are version 0. Varies the generated fields.
    pub version: u32,
    /// When it last changed, in milliseconds since the epoch.
    pub updated_ms: i64,
    /// Deleted (shown only by profiles whose source keeps a deletion flag).
    pub deleted: bool,
}

/// A change kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    version: u32,
    updated_ms: i64,
    deleted: bool,
}

/// The bounds of a change-time filter, already at the profile's granularity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeBounds {
    /// `(t, inclusive)`: keep records with time `> t` (or `>= t`).
    pub(crate) lower: Option<(i64, bool)>,
    /// `(t, inclusive)`: keep records with time `< t` (or `<= t`).
    pub(crate) upper: Option<(i64, bool)>,
}

impl TimeBounds {
    fn admits(&self, time: i64) -> bool {
        let lower_ok = match self.lower {
            None => true,
            Some((t, true)) => time >= t,
            Some((t, false)) => time > t,
        };
        let upper_ok = match self.upper {
            None => true,
            Some((t, true)) => time <= t,
            Some((t, false)) => time < t,
        };
        lower_ok && upper_ok
    }
}

/// Which records a listing shows and how it compares times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListingView {
    pub(crate) bounds: TimeBounds,
    /// Milliseconds per unit of the profile's change time (1000 for Maximo's seconds).
    pub(crate) granularity_ms: i64,
    /// Whether deleted records stay listed with their deletion flag set.
    pub(crate) shows_deleted: bool,
}

impl ListingView {
    fn effective(&self, ms: i64) -> i64 {
        ms.div_euclid(self.granularity_ms) * self.granularity_ms
    }
}

/// One entity's records.
#[derive(Debug)]
pub(crate) struct EntityData {
    seeded: u64,
    /// The index the next created record gets.
    next_index: u64,
    changes: BTreeMap<u64, Change>,
    first_ms: i64,
    step_ms: i64,
}

impl EntityData {
    pub(crate) fn new(seeded: u64, last_ms: i64, step_ms: i64) -> Self {
        let span = (seeded.saturating_sub(1) as i64).saturating_mul(step_ms);
        EntityData {
            seeded,
            next_index: seeded,
            changes: BTreeMap::new(),
            first_ms: last_ms - span,
            step_ms,
        }
    }

    /// The change time of a seeded record.
    pub(crate) fn seeded_ms(&self, index: u64) -> i64 {
        self.first_ms + (index as i64) * self.step_ms
    }

    /// The current state of a record, if it exists (deleted records exist).
    pub(crate) fn get(&self, index: u64) -> Option<RecordState> {
        match self.changes.get(&index) {
            Some(change) => Some(RecordState {
                index,
                version: change.version,
                updated_ms: change.updated_ms,
                deleted: change.deleted,
            }),
            None if index < self.seeded => Some(RecordState {
                index,
                version: 0,
                updated_ms: self.seeded_ms(index),
                deleted: false,
            }),
            None => None,
        }
    }

    /// Records that exist and are not deleted.
    pub(crate) fn live_count(&self) -> u64 {
        let deleted = self.changes.values().filter(|c| c.deleted).count() as u64;
        self.next_index - deleted
    }

    pub(crate) fn create(&mut self, now_ms: i64) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        self.changes.insert(
            index,
            Change {
                version: 1,
                updated_ms: now_ms,
                deleted: false,
            },
        );
        index
    }

    /// Updates or deletes a live record; `false` if there is none at `index`.
    pub(crate) fn modify(&mut self, index: u64, now_ms: i64, delete: bool) -> bool {
        let Some(state) = self.get(index).filter(|s| !s.deleted) else {
            return false;
        };
        self.changes.insert(
            index,
            Change {
                version: state.version + 1,
                updated_ms: now_ms,
                deleted: delete,
            },
        );
        true
    }

    /// A live record picked from `random`, trying a few times before giving up.
    pub(crate) fn pick_live(&self, mut random: impl FnMut() -> u64) -> Option<u64> {
        if self.next_index == 0 {
            return None;
        }
        (0..32)
            .map(|_| random() % self.next_index)
            .find(|&index| self.get(index).is_some_and(|s| !s.deleted))
    }

    /// The seeded index range `[lo, hi)` whose seeded times pass the bounds.
    fn seeded_range(&self, view: &ListingView) -> (u64, u64) {
        let passes_lower = |index: u64| {
            let t = view.effective(self.seeded_ms(index));
            view.bounds
                .lower
                .is_none_or(|(b, inclusive)| if inclusive { t >= b } else { t > b })
        };
        let passes_upper = |index: u64| {
            let t = view.effective(self.seeded_ms(index));
            view.bounds
                .upper
                .is_none_or(|(b, inclusive)| if inclusive { t <= b } else { t < b })
        };
        // Seeded times grow with the index: failing the lower bound is a prefix, passing the
        // upper bound is a prefix.
        let lo = partition_point(self.seeded, |i| !passes_lower(i));
        let hi = partition_point(self.seeded, passes_upper);
        (lo, hi.max(lo))
    }

    fn change_listed(&self, view: &ListingView, change: &Change) -> bool {
        (view.shows_deleted || !change.deleted)
            && view.bounds.admits(view.effective(change.updated_ms))
    }

    /// The index of the listed record at position `offset`, or `None` past the end.
    ///
    /// One pass over the changes: between two changed indexes every seeded index in range is
    /// listed, so whole runs are skipped by arithmetic. Cost grows with the number of changes,
    /// never with the number of records.
    pub(crate) fn index_at(&self, view: &ListingView, offset: u64) -> Option<u64> {
        let (lo, hi) = self.seeded_range(view);
        let mut position = 0u64;
        let mut cursor = lo;
        for (&index, change) in &self.changes {
            let run = index.min(hi).saturating_sub(cursor);
            if position + run > offset {
                return Some(cursor + (offset - position));
            }
            position += run;
            cursor = cursor.max(index.min(hi));
            if (lo..hi).contains(&index) {
                // The change replaces the seeded record at this index.
                cursor = index + 1;
            }
            if self.change_listed(view, change) {
                if position == offset {
                    return Some(index);
                }
                position += 1;
            }
        }
        let run = hi.saturating_sub(cursor);
        (position + run > offset).then(|| cursor + (offset - position))
    }

    /// Up to `limit` listed records from index `start` on, and whether more follow.
    pub(crate) fn list(
        &self,
        view: &ListingView,
        start: u64,
        limit: usize,
    ) -> (Vec<RecordState>, bool) {
        let (lo, hi) = self.seeded_range(view);
        let mut out = Vec::with_capacity(limit.min(10_000) + 1);
        let mut changes = self.changes.range(start..).peekable();
        let mut next_seeded = start.max(lo);
        while out.len() <= limit {
            let seeded_left = next_seeded < hi;
            match (seeded_left, changes.peek().map(|(index, _)| **index)) {
                (true, Some(index)) if index <= next_seeded => {
                    if index == next_seeded {
                        next_seeded += 1;
                    }
                    self.push_change(view, &mut changes, &mut out);
                }
                (true, _) => {
                    out.push(RecordState {
                        index: next_seeded,
                        version: 0,
                        updated_ms: self.seeded_ms(next_seeded),
                        deleted: false,
                    });
                    next_seeded += 1;
                }
                (false, Some(_)) => self.push_change(view, &mut changes, &mut out),
                (false, None) => break,
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        (out, more)
    }

    fn push_change<'a>(
        &self,
        view: &ListingView,
        changes: &mut std::iter::Peekable<impl Iterator<Item = (&'a u64, &'a Change)>>,
        out: &mut Vec<RecordState>,
    ) {
        if let Some((&index, change)) = changes.next()
            && self.change_listed(view, change)
        {
            out.push(RecordState {
                index,
                version: change.version,
                updated_ms: change.updated_ms,
                deleted: change.deleted,
            });
        }
    }
}

/// The smallest `i` in `[0, n)` where `predicate` turns false (`n` if never), for a predicate
/// that is true on a prefix.
fn partition_point(n: u64, predicate: impl Fn(u64) -> bool) -> u64 {
    let (mut low, mut high) = (0u64, n);
    while low < high {
        let mid = low + (high - low) / 2;
        if predicate(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// Whether the real systems of a profile keep a deleted record of this entity with a flag
/// (SAP's deletion code and indicators) rather than dropping it.
pub fn keeps_deleted_with_flag(profile: ProfileKind, entity: Entity) -> bool {
    matches!(profile, ProfileKind::ODataV2 | ProfileKind::ODataV4) && entity != Entity::WorkOrders
}

/// A small, fast, deterministic mixer (SplitMix64) for seeded values.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(lower: Option<(i64, bool)>, upper: Option<(i64, bool)>) -> ListingView {
        ListingView {
            bounds: TimeBounds { lower, upper },
            granularity_ms: 1,
            shows_deleted: false,
        }
    }

    /// The listing computed the slow, obvious way.
    fn brute(data: &EntityData, view: &ListingView) -> Vec<u64> {
        (0..data.next_index)
            .filter_map(|i| data.get(i))
            .filter(|s| {
                (view.shows_deleted || !s.deleted)
                    && view.bounds.admits(view.effective(s.updated_ms))
            })
            .map(|s| s.index)
            .collect()
    }

    #[test]
    fn listing_and_offsets_agree_with_brute_force() {
        let mut data = EntityData::new(50, 50_000, 1_000);
        data.modify(3, 60_000, false);
        data.modify(10, 61_000, true);
        data.modify(20, 5_000, false);
        let created = data.create(62_000);
        assert_eq!(created, 50);
        data.modify(49, 63_000, true);
        let views = [
            view(None, None),
            view(Some((20_000, false)), None),
            view(Some((20_000, true)), Some((45_000, true))),
            view(Some((59_000, false)), Some((61_000, true))),
            view(Some((1_000_000, false)), None),
        ];
        for v in views {
            let expected = brute(&data, &v);
            let (listed, more) = data.list(&v, 0, 1_000);
            assert!(!more);
            assert_eq!(listed.iter().map(|s| s.index).collect::<Vec<_>>(), expected);
            for (offset, index) in expected.iter().enumerate() {
                assert_eq!(
                    data.index_at(&v, offset as u64),
                    Some(*index),
                    "offset {offset}"
                );
            }
            assert_eq!(data.index_at(&v, expected.len() as u64), None);
            // Paging by 7 from each page's last index + 1 gives the same sequence.
            let mut paged = Vec::new();
            let mut start = 0;
            loop {
                let (page, more) = data.list(&v, start, 7);
                paged.extend(page.iter().map(|s| s.index));
                match (more, page.last()) {
                    (true, Some(last)) => start = last.index + 1,
                    _ => break,
                }
            }
            assert_eq!(paged, expected);
        }
        assert_eq!(data.live_count(), 49);
    }

    #[test]
    fn random_changes_and_views_agree_with_brute_force() {
        let mut random = 7u64;
        let mut next = move || {
            random = random.wrapping_add(1);
            mix(random)
        };
        for _ in 0..200 {
            let seeded = 1 + next() % 60;
            let mut data = EntityData::new(seeded, 100_000, 1 + (next() % 3) as i64 * 500);
            for _ in 0..next() % 20 {
                let now = 50_000 + (next() % 100_000) as i64;
                match next() % 3 {
                    0 => {
                        data.create(now);
                    }
                    kind => {
                        let index = next() % data.next_index;
                        data.modify(index, now, kind == 2);
                    }
                }
            }
            let bound = |value: u64| {
                (!value.is_multiple_of(4))
                    .then(|| (60_000 + (value % 100_000) as i64, value.is_multiple_of(2)))
            };
            let v = ListingView {
                bounds: TimeBounds {
                    lower: bound(next()),
                    upper: bound(next()),
                },
                granularity_ms: if next() % 2 == 0 { 1 } else { 1_000 },
                shows_deleted: next() % 2 == 0,
            };
            let expected = brute(&data, &v);
            let (listed, _) = data.list(&v, 0, 10_000);
            assert_eq!(listed.iter().map(|s| s.index).collect::<Vec<_>>(), expected);
            for offset in 0..=expected.len() {
                assert_eq!(
                    data.index_at(&v, offset as u64),
                    expected.get(offset).copied()
                );
            }
        }
    }

    #[test]
    fn coarse_granularity_compares_whole_seconds() {
        let data = EntityData::new(10, 10_900, 100);
        // Seeded times 10_000..=10_900 all fall in second 10.
        let mut v = view(Some((10_000, false)), None);
        v.granularity_ms = 1_000;
        assert!(data.list(&v, 0, 100).0.is_empty());
        v.bounds.lower = Some((9_000, false));
        assert_eq!(data.list(&v, 0, 100).0.len(), 10);
    }
}
