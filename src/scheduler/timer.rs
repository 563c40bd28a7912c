//! A keyed timer queue: for each key (a definition's identity) the value
//! scheduled under it and the next instant it fires.
//!
//! Pure data: no store, no clock, no tasks. Time comes in as an argument,
//! so every behaviour is unit-tested below without a runtime.
//!
//! Invariants:
//! - A key has at most one live timer. [`TimerQueue::insert`] replaces the
//!   old one: its heap items become stale (their version differs) and are
//!   skipped when they surface, or compacted away once stale items
//!   outnumber live ones, so memory stays bounded under churn.
//! - A key's next instant is `Some(t)` exactly while one live heap item
//!   `(t, key)` exists. [`TimerQueue::pop_due`] takes the key out of the
//!   queue (its next instant becomes `None`) until
//!   [`TimerQueue::reschedule`] puts it back, so a due key pops once.
//! - Due keys pop in order of instant, then of scheduling, then of key.
//! - Popping and peeking cost O(log n) amortized; only [`TimerQueue::iter`]
//!   and [`TimerQueue::retain`] walk every key.

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use chrono::{DateTime, Utc};

/// A heap item: fire instant, timer version (stale when it differs from
/// the timer's), key.
type Item<K> = Reverse<(DateTime<Utc>, u64, K)>;

struct Timer<V> {
    value: V,
    version: u64,
    next: Option<DateTime<Utc>>,
}

/// Keys with their values, by next fire instant.
pub struct TimerQueue<K, V> {
    timers: HashMap<K, Timer<V>>,
    heap: BinaryHeap<Item<K>>,
    /// The last version handed out; every insert takes a new one.
    version: u64,
}

impl<K: Clone + Eq + Hash + Ord, V> Default for TimerQueue<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord, V> TimerQueue<K, V> {
    pub fn new() -> Self {
        TimerQueue {
            timers: HashMap::new(),
            heap: BinaryHeap::new(),
            version: 0,
        }
    }

    /// Keys in the queue (scheduled or not).
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// The value scheduled under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.timers.get(key).map(|t| &t.value)
    }

    /// The key as the queue holds it.
    pub fn key<Q>(&self, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.timers.get_key_value(key).map(|(k, _)| k)
    }

    /// When `key` fires next; `None` when it never fires again, is unknown,
    /// or was popped and not yet rescheduled.
    pub fn next_of<Q>(&self, key: &Q) -> Option<DateTime<Utc>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.timers.get(key).and_then(|t| t.next)
    }

    /// Schedule `value` under `key` to fire at `next` (never, if `None`),
    /// replacing whatever `key` had.
    pub fn insert(&mut self, key: K, value: V, next: Option<DateTime<Utc>>) {
        self.version += 1;
        let version = self.version;
        if let Some(at) = next {
            self.heap.push(Reverse((at, version, key.clone())));
        }
        self.timers.insert(
            key,
            Timer {
                value,
                version,
                next,
            },
        );
        self.compact_if_stale();
    }

    /// Keep only the keys `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.timers.retain(|k, _| keep(k));
        self.compact_if_stale();
    }

    /// The earliest key due at `now` (its instant not after `now`) with its
    /// instant, taken out of the queue until rescheduled.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<(K, DateTime<Utc>)> {
        while let Some(Reverse((at, version, _))) = self.heap.peek() {
            if *at > now {
                return None;
            }
            let version = *version;
            let Reverse((at, _, key)) = self.heap.pop()?;
            if let Some(timer) = self.timers.get_mut(&key) {
                if timer.version == version {
                    timer.next = None;
                    return Some((key, at));
                }
            }
        }
        None
    }

    /// Put a popped `key` back to fire at `next` (never, if `None`). A key
    /// no longer in the queue stays out; a key still queued moves.
    pub fn reschedule(&mut self, key: &K, next: Option<DateTime<Utc>>) {
        let Some(timer) = self.timers.get_mut(key) else {
            return;
        };
        if timer.next.is_some() {
            // Not popped: retire its queued item.
            self.version += 1;
            timer.version = self.version;
        }
        timer.next = next;
        if let Some(at) = next {
            self.heap.push(Reverse((at, timer.version, key.clone())));
        }
    }

    /// The earliest instant any key fires at (dropping stale items off the
    /// top of the heap on the way).
    pub fn next_instant(&mut self) -> Option<DateTime<Utc>> {
        while let Some(Reverse((at, version, key))) = self.heap.peek() {
            if self.is_live(key, *version) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// The earliest scheduled key and its instant, without touching the
    /// heap (walks every key).
    pub fn earliest(&self) -> Option<(DateTime<Utc>, &K)> {
        self.timers
            .iter()
            .filter_map(|(k, t)| t.next.map(|at| (at, k)))
            .min()
    }

    /// Every key with its value and next instant, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, Option<DateTime<Utc>>)> {
        self.timers.iter().map(|(k, t)| (k, &t.value, t.next))
    }

    fn is_live(&self, key: &K, version: u64) -> bool {
        self.timers.get(key).is_some_and(|t| t.version == version)
    }

    /// Drop stale heap items when they dominate, keeping memory bounded.
    fn compact_if_stale(&mut self) {
        if self.heap.len() > 2 * self.timers.len() + 1024 {
            let timers = &self.timers;
            self.heap.retain(|Reverse((_, version, key))| {
                timers.get(key).is_some_and(|t| t.version == *version)
            });
        }
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

/// Watches the wall clock against monotonic time: between two
/// observations both must move alike, so a difference beyond `tolerance`
/// is a step of the wall clock (set by hand, a bad time server, a
/// resumed VM whose clock was corrected). Pure: both times come in as
/// arguments.
#[derive(Debug, Clone)]
pub struct WallWatch {
    last: Option<(tokio::time::Instant, DateTime<Utc>)>,
    tolerance: chrono::Duration,
}

impl WallWatch {
    pub fn new(tolerance: chrono::Duration) -> Self {
        WallWatch {
            last: None,
            tolerance,
        }
    }

    /// Record a reading; the step since the last one (wall time minus what
    /// monotonic time predicts), when it exceeds the tolerance.
    pub fn observe(
        &mut self,
        mono: tokio::time::Instant,
        wall: DateTime<Utc>,
    ) -> Option<chrono::Duration> {
        let last = self.last.replace((mono, wall));
        let (then_mono, then_wall) = last?;
        let elapsed = chrono::Duration::from_std(mono.saturating_duration_since(then_mono))
            .unwrap_or(chrono::Duration::MAX);
        let step = wall - then_wall - elapsed;
        (step.abs() > self.tolerance).then_some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("valid time")
    }

    fn drain(q: &mut TimerQueue<&'static str, u32>, now: DateTime<Utc>) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop_due(now).map(|(k, _)| k)).collect()
    }

    #[test]
    fn pops_due_keys_in_instant_order_and_nothing_early() {
        let mut q = TimerQueue::new();
        q.insert("c", 3, Some(t(30)));
        q.insert("a", 1, Some(t(10)));
        q.insert("b", 2, Some(t(20)));
        q.insert("never", 0, None);
        assert_eq!(q.len(), 4);
        assert_eq!(q.next_instant(), Some(t(10)));
        assert_eq!(q.earliest(), Some((t(10), &"a")));
        assert_eq!(q.pop_due(t(9)), None, "nothing is due before its instant");
        assert_eq!(drain(&mut q, t(20)), ["a", "b"]);
        assert_eq!(q.next_instant(), Some(t(30)));
        assert_eq!(q.get("a"), Some(&1), "a popped key keeps its value");
    }

    #[test]
    fn a_popped_key_is_out_until_rescheduled() {
        let mut q = TimerQueue::new();
        q.insert("a", 1, Some(t(10)));
        assert_eq!(q.pop_due(t(10)), Some(("a", t(10))));
        assert_eq!(q.next_of("a"), None);
        assert_eq!(q.pop_due(t(100)), None, "a slot pops once");
        assert_eq!(q.next_instant(), None);
        q.reschedule(&"a", Some(t(70)));
        assert_eq!(q.next_of("a"), Some(t(70)));
        assert_eq!(q.pop_due(t(69)), None);
        assert_eq!(q.pop_due(t(100)), Some(("a", t(70))));
        q.reschedule(&"a", None);
        assert_eq!(q.next_instant(), None, "rescheduled to never");
        q.reschedule(&"gone", Some(t(1)));
        assert_eq!(q.next_instant(), None, "an unknown key is not scheduled");
    }

    #[test]
    fn insert_replaces_and_the_old_instant_never_fires() {
        let mut q = TimerQueue::new();
        q.insert("a", 1, Some(t(10)));
        q.insert("a", 2, Some(t(50)));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_instant(), Some(t(50)), "the stale top is skipped");
        assert_eq!(q.pop_due(t(40)), None);
        assert_eq!(q.pop_due(t(50)), Some(("a", t(50))));
        assert_eq!(q.get("a"), Some(&2));
        // Rescheduled while still queued: it moves, it does not double.
        q.insert("a", 3, Some(t(60)));
        q.reschedule(&"a", Some(t(60)));
        q.reschedule(&"a", Some(t(65)));
        assert_eq!(q.pop_due(t(64)), None);
        assert_eq!(drain(&mut q, t(100)), ["a"], "one key, one pop per slot");
    }

    #[test]
    fn removed_keys_never_fire() {
        let mut q = TimerQueue::new();
        q.insert("a", 1, Some(t(10)));
        q.insert("b", 2, Some(t(10)));
        q.retain(|k| *k != "a");
        assert_eq!(q.get("a"), None);
        assert_eq!(drain(&mut q, t(100)), ["b"]);
    }

    #[test]
    fn equal_instants_pop_in_scheduling_order() {
        let mut q = TimerQueue::new();
        for k in ["z", "y", "x"] {
            q.insert(k, 0, Some(t(5)));
        }
        assert_eq!(drain(&mut q, t(5)), ["z", "y", "x"]);
    }

    #[test]
    fn stale_items_are_compacted_under_churn() {
        let mut q = TimerQueue::new();
        for round in 0..50 {
            for k in 0..100u32 {
                q.insert(k, round, Some(t(i64::from(k) + 1000)));
            }
        }
        assert_eq!(q.len(), 100);
        assert!(
            q.heap_len() <= 2 * q.len() + 1024 + 1,
            "{} heap items for {} keys",
            q.heap_len(),
            q.len()
        );
        let popped: Vec<_> = std::iter::from_fn(|| q.pop_due(t(5000))).collect();
        assert_eq!(popped.len(), 100, "each key pops once, with its last value");
        assert!(popped.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(q.iter().all(|(_, v, next)| *v == 49 && next.is_none()));
    }

    #[test]
    fn wall_clock_steps_are_told_apart_from_time_passing() {
        let mut w = WallWatch::new(chrono::Duration::seconds(5));
        let mono = tokio::time::Instant::now();
        let secs = |n: u64| std::time::Duration::from_secs(n);
        assert_eq!(
            w.observe(mono, t(0)),
            None,
            "the first reading is a baseline"
        );
        assert_eq!(
            w.observe(mono + secs(60), t(60)),
            None,
            "both moved a minute"
        );
        assert_eq!(w.observe(mono + secs(61), t(63)), None, "within tolerance");
        assert_eq!(
            w.observe(mono + secs(62), t(64 - 3600)),
            Some(chrono::Duration::seconds(-3600)),
            "stepped back an hour"
        );
        assert_eq!(w.observe(mono + secs(63), t(65 - 3600)), None);
        assert_eq!(
            w.observe(mono + secs(64), t(66)),
            Some(chrono::Duration::seconds(3600)),
            "and forward again"
        );
    }
}
