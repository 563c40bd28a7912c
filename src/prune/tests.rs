//! Executing plans against a small in-memory provider.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::domain::{RemoteSnapshot, Target};
use crate::provider::{
    CreateOutcome, CreateRequest, Operation, PollOutcome, PollPolicy, Provider, ProviderError,
    ProviderResult,
};
use crate::retention::tests::{at_secs, candidate, daily, policy, DAY};
use crate::retention::{plan, Candidate, Ownership, Reason, StoreRecords};

/// A minimal in-memory provider: holds snapshots, deletes them, can be told
/// to fail for some names or to drop results (a broken provider).
#[derive(Default)]
struct MemProvider {
    snapshots: Mutex<Vec<RemoteSnapshot>>,
    fail: HashMap<String, ProviderError>,
    truncate_results_to: Option<usize>,
    list_error: Option<ProviderError>,
    delete_calls: Mutex<Vec<Vec<String>>>,
}

impl MemProvider {
    fn with(snapshots: &[Candidate]) -> Self {
        MemProvider {
            snapshots: Mutex::new(snapshots.iter().map(|c| c.snapshot.clone()).collect()),
            ..MemProvider::default()
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .snapshots
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.delete_calls.lock().unwrap().clone()
    }
}

impl Provider for MemProvider {
    async fn create_snapshot(&self, _req: &CreateRequest) -> ProviderResult<CreateOutcome> {
        Err(ProviderError::permanent("not used by retention tests"))
    }

    async fn poll(&self, _req: &CreateRequest, _op: &Operation) -> ProviderResult<PollOutcome> {
        Err(ProviderError::permanent("not used by retention tests"))
    }

    async fn list_snapshots(
        &self,
        _target: &Target,
        _disk_id: u32,
    ) -> ProviderResult<Vec<RemoteSnapshot>> {
        if let Some(e) = &self.list_error {
            return Err(e.clone());
        }
        Ok(self.snapshots.lock().unwrap().clone())
    }

    async fn delete_snapshots(
        &self,
        _target: &Target,
        _disk_id: u32,
        snapshots: &[RemoteSnapshot],
    ) -> Vec<ProviderResult<()>> {
        self.delete_calls
            .lock()
            .unwrap()
            .push(snapshots.iter().map(|s| s.name.clone()).collect());
        let mut store = self.snapshots.lock().unwrap();
        let mut results: Vec<ProviderResult<()>> = snapshots
            .iter()
            .map(|s| {
                if let Some(e) = self.fail.get(&s.name) {
                    return Err(e.clone());
                }
                // Absent already: "not found" is success.
                store.retain(|x| x.id != s.id);
                Ok(())
            })
            .collect();
        if let Some(n) = self.truncate_results_to {
            results.truncate(n);
        }
        results
    }

    fn poll_policy(&self) -> PollPolicy {
        PollPolicy::default()
    }
}

fn vm() -> Target {
    Target::Vm("web1.example.com".into())
}

#[tokio::test]
async fn execute_deletes_exactly_the_planned_snapshots_in_one_call() {
    let mut snaps = daily(5);
    snaps.push(candidate("manual", -10, Ownership::Unmanaged));
    let provider = MemProvider::with(&snaps);
    let plan = plan(&snaps, &policy(2, None), at_secs(10 * DAY));

    let deletions = execute(&provider, &vm(), 0, &plan).await;

    let done: Vec<&str> = deletions
        .iter()
        .filter(|d| d.outcome == DeletionOutcome::Done)
        .map(|d| d.snapshot.name.as_str())
        .collect();
    assert_eq!(
        done,
        vec![
            "daily-20260101_000000",
            "daily-20260102_000000",
            "daily-20260103_000000"
        ]
    );
    assert_eq!(provider.calls().len(), 1);
    assert_eq!(
        provider.names(),
        vec!["daily-20260104_000000", "daily-20260105_000000", "manual"]
    );
    assert_eq!(deletions[0].reasons, vec![Reason::BeyondRetention(2)]);
}

#[tokio::test]
async fn execute_counts_not_found_as_done() {
    let snaps = daily(3);
    // The first one was deleted by hand after the listing.
    let provider = MemProvider::with(&snaps[1..]);
    let plan = plan(&snaps, &policy(1, None), at_secs(10 * DAY));
    let deletions = execute(&provider, &vm(), 0, &plan).await;
    assert_eq!(deletions.len(), 2);
    assert!(deletions.iter().all(|d| d.outcome == DeletionOutcome::Done));
}

#[tokio::test]
async fn execute_reports_failures_per_snapshot() {
    let snaps = daily(4);
    let mut provider = MemProvider::with(&snaps);
    let err = ProviderError::transient("snapshot is locked (423)");
    provider
        .fail
        .insert("daily-20260102_000000".into(), err.clone());
    let plan = plan(&snaps, &policy(1, None), at_secs(10 * DAY));

    let deletions = execute(&provider, &vm(), 0, &plan).await;
    let outcomes: Vec<(&str, &DeletionOutcome)> = deletions
        .iter()
        .map(|d| (d.snapshot.name.as_str(), &d.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("daily-20260101_000000", &DeletionOutcome::Done),
            ("daily-20260102_000000", &DeletionOutcome::Failed(err)),
            ("daily-20260103_000000", &DeletionOutcome::Done),
        ]
    );
    assert_eq!(
        provider.names(),
        vec!["daily-20260102_000000", "daily-20260104_000000"]
    );
}

#[tokio::test]
async fn execute_with_nothing_to_delete_does_not_call_the_provider() {
    let snaps = daily(3);
    let provider = MemProvider::with(&snaps);
    let plan = plan(&snaps, &policy(0, None), at_secs(10 * DAY));
    assert!(execute(&provider, &vm(), 0, &plan).await.is_empty());
    assert!(provider.calls().is_empty());
}

#[tokio::test]
async fn execute_refuses_a_plan_that_deletes_a_snapshot_not_owned() {
    let snaps = vec![
        candidate("manual", 0, Ownership::Unmanaged),
        candidate("daily-a", 1, Ownership::Recorded),
    ];
    let provider = MemProvider::with(&snaps);
    let mut plan = plan(&snaps, &policy(0, None), at_secs(10 * DAY));
    for d in &mut plan {
        d.keep = false; // a corrupted plan
    }
    let deletions = execute(&provider, &vm(), 0, &plan).await;
    assert_eq!(deletions[0].snapshot.name, "manual");
    assert_eq!(deletions[0].outcome, DeletionOutcome::Refused);
    assert_eq!(deletions[1].outcome, DeletionOutcome::Done);
    assert_eq!(provider.calls(), vec![vec!["daily-a".to_string()]]);
    assert_eq!(provider.names(), vec!["manual"]);
}

#[tokio::test]
async fn execute_treats_missing_provider_results_as_failures() {
    let snaps = daily(3);
    let mut provider = MemProvider::with(&snaps);
    provider.truncate_results_to = Some(1);
    let plan = plan(&snaps, &policy(1, None), at_secs(10 * DAY));
    let deletions = execute(&provider, &vm(), 0, &plan).await;
    assert_eq!(deletions[0].outcome, DeletionOutcome::Done);
    match &deletions[1].outcome {
        DeletionOutcome::Failed(e) => {
            assert!(!e.is_transient());
            assert!(
                e.message.contains("1 results for 2 deletions"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn deletions_render_and_serialize() {
    let snaps = daily(3);
    let mut provider = MemProvider::with(&snaps);
    provider.fail.insert(
        "daily-20260101_000000".into(),
        ProviderError::permanent("forbidden (403)"),
    );
    let plan = plan(&snaps, &policy(1, None), at_secs(10 * DAY));
    let deletions = execute(&provider, &vm(), 0, &plan).await;
    let table = render_deletions_table(&deletions, chrono_tz::UTC);
    assert!(
        table.contains("daily-20260101_000000  2026-01-01 00:00:00 UTC  failed: forbidden (403)"),
        "{table}"
    );
    let json = serde_json::to_value(&deletions).unwrap();
    assert_eq!(
        json[0]["outcome"],
        serde_json::json!({"status": "failed", "error": "forbidden (403)", "class": "permanent"})
    );
    assert_eq!(json[1]["outcome"], serde_json::json!({"status": "done"}));
}

#[tokio::test]
async fn list_and_plan_classifies_and_plans_a_fresh_listing() {
    let mut snaps = daily(3);
    snaps.push(candidate("manual", -5, Ownership::Unmanaged));
    let provider = MemProvider::with(&snaps);
    let store = StoreRecords {
        live: ["daily-20260101_000000", "daily-20251201_000000"]
            .map(String::from)
            .into_iter()
            .collect(),
        ..StoreRecords::default()
    };
    let listed = list_and_plan(
        &provider,
        &vm(),
        0,
        &store,
        "daily",
        &Intent::Retention(policy(1, None)),
        at_secs(10 * DAY),
    )
    .await
    .expect("listing succeeds");
    assert_eq!(listed.classification.missing, vec!["daily-20251201_000000"]);
    assert_eq!(listed.classification.adopted().count(), 2);
    let deleted: Vec<&str> = listed
        .decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.snapshot.name.as_str())
        .collect();
    assert_eq!(
        deleted,
        vec!["daily-20260101_000000", "daily-20260102_000000"]
    );
}

#[tokio::test]
async fn a_failed_listing_yields_no_plan_and_deletes_nothing() {
    let snaps = daily(5);
    let mut provider = MemProvider::with(&snaps);
    let err = ProviderError::transient("listing stopped at page 2 of 3: 503");
    provider.list_error = Some(err.clone());
    let result = list_and_plan(
        &provider,
        &vm(),
        0,
        &StoreRecords::default(),
        "daily",
        &Intent::Retention(policy(1, None)),
        at_secs(10 * DAY),
    )
    .await;
    assert_eq!(result, Err(err));
    assert!(provider.calls().is_empty());
    assert_eq!(provider.names().len(), 5);
}
