//! The API request budget shared through the store: several rate limiters,
//! each on its own store handle as separate nodes would be, on one token.
//! The windows are shortened (a second instead of a minute) so the test
//! sees the budget refill without waiting a minute; the rule is the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use snapsched::provider::ratelimit::{RateLimiter, RateLimits};
use snapsched::store::{BudgetWindow, Grant, Store};
use snapsched::wiring::StoreBudget;

use crate::support::db;

const BUCKET: &str = "0123abcd";

/// A limiter of one "node": its own store handle on the shared database.
fn node(store: Store, limits: RateLimits, window: Duration) -> Arc<RateLimiter> {
    let limiter = Arc::new(RateLimiter::new(limits));
    limiter.share_with(
        Arc::new(StoreBudget::with_windows(
            store,
            window,
            Duration::from_secs(3600),
        )),
        BUCKET.into(),
    );
    limiter
}

/// The most grants in any window of `length` ms, by the database's clock.
fn busiest_window(at: &[i64], length: i64) -> usize {
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t < at[i] + length).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn limiters_on_separate_handles_share_one_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapsched.db");
    let limits = RateLimits {
        per_minute: 10,
        per_hour: 1000,
    };
    let window = Duration::from_secs(1);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        // Each limiter alone would grant its 8 requests at once (its own
        // minute allows 10); together they ask for 24.
        let limiter = node(db::open(&path).await, limits, window);
        for _ in 0..8 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move { l.acquire().await }));
        }
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("every request is granted within a minute");

    let at = db::open(&path).await.budget_grants(BUCKET).await.unwrap();
    assert_eq!(at.len(), 24, "every request was granted by the store");
    let busiest = busiest_window(&at, 1000);
    assert!(busiest <= 10, "{busiest} grants within one window: {at:?}");
    // 24 requests at 10 a window need at least two windows to pass.
    assert!(at[23] - at[0] >= 2000, "{at:?}");
}

/// Grants per second and the latency of one grant, on this run's backend:
/// one handle asking in a loop, then three asking at once. Printed (run with
/// `--nocapture`); the test only checks that every grant was made.
#[tokio::test]
async fn measure_shared_budget_grants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapsched.db");
    let windows = [
        BudgetWindow {
            limit: 1_000_000,
            length: Duration::from_secs(60),
        },
        BudgetWindow {
            limit: 1_000_000,
            length: Duration::from_secs(3600),
        },
    ];
    const N: usize = 300;
    let store = db::open(&path).await;
    let mut latencies = Vec::with_capacity(N);
    let start = Instant::now();
    for _ in 0..N {
        let t = Instant::now();
        assert_eq!(
            store.grant_request("seq", &windows).await.unwrap(),
            Grant::Granted
        );
        latencies.push(t.elapsed());
    }
    let sequential = N as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];

    let handles = [store.clone(), db::open(&path).await, db::open(&path).await];
    let start = Instant::now();
    let tasks: Vec<_> = handles
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..N / 3 {
                    assert_eq!(
                        s.grant_request("par", &windows).await.unwrap(),
                        Grant::Granted
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let parallel = (N / 3 * 3) as f64 / start.elapsed().as_secs_f64();
    println!(
        "shared budget on {:?}: {sequential:.0} grants/s from one handle \
         (latency p50 {:?}, p99 {:?}); {parallel:.0} grants/s from three handles at once",
        store.backend(),
        pct(50),
        pct(99),
    );
    assert_eq!(store.budget_grants("par").await.unwrap().len(), N / 3 * 3);
}
