//! The webhook's persisted queue (`notify_queue`) and the per-definition
//! failing state behind its rate limit (`notify_failing`).
//!
//! Events are written by the same transaction that writes what they report:
//! a run's final state ([`Store::update_run`]) or a snapshot record marked
//! gone ([`Store::mark_snapshot`]). A crash therefore loses no event and
//! never sends one about a change that was not committed. Only when
//! [`Store::set_notify_queue`] gave a limit (a webhook is configured) are
//! events recorded at all.
//!
//! The queue is bounded: an insert that takes it past the limit deletes the
//! oldest rows, adds them to the `notify_dropped` counter in `meta`, and
//! logs at warn. Delivery reads the head ([`Store::notify_head`]) and
//! deletes a row once the receiver accepted it ([`Store::notify_delivered`]).

use chrono::{DateTime, Utc};

use super::backend::{Args, Conn};
use super::nodes::now_ms;
use super::{parse_ts, ts_ms, Backend, Store, StoreError, StoreResult, OF_IDENTITY};
use crate::domain::event::{
    self, Event, EventKind, Failing, FailingChange, Failures, NodeRef, SnapshotInfo,
};
use crate::domain::{Identity, Run};

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Queue position: lower ids are older and are sent first.
    pub id: i64,
    pub event_id: String,
    pub kind: EventKind,
    pub def_name: String,
    /// The JSON body, exactly as it is sent.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: i64,
    event_id: String,
    kind: String,
    def_name: String,
    payload: String,
    created_at: String,
    attempts: i64,
}

impl QueueRow {
    fn into_event(self) -> StoreResult<QueuedEvent> {
        Ok(QueuedEvent {
            id: self.id,
            kind: EventKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("notify kind '{}'", self.kind)))?,
            event_id: self.event_id,
            def_name: self.def_name,
            payload: self.payload,
            created_at: parse_ts(&self.created_at)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
        })
    }
}

#[derive(sqlx::FromRow)]
struct FailingRow {
    since: String,
    first_run_id: i64,
    failures: i64,
}

impl Store {
    /// Record notification events from now on, keeping at most `limit`
    /// queued (every clone of this store); `None` records none.
    pub fn set_notify_queue(&self, limit: Option<u32>) {
        *self.notify.write().unwrap_or_else(|e| e.into_inner()) = limit;
    }

    /// The queue limit, when events are recorded.
    pub fn notify_queue_limit(&self) -> Option<u32> {
        *self.notify.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest `n` queued events, oldest first.
    pub async fn notify_head(&self, n: u32) -> StoreResult<Vec<QueuedEvent>> {
        self.pool
            .fetch_all::<QueueRow>(
                "SELECT id, event_id, kind, def_name, payload, created_at, attempts
                 FROM notify_queue ORDER BY id LIMIT $1",
                &Args::new().int(n),
            )
            .await?
            .into_iter()
            .map(QueueRow::into_event)
            .collect()
    }

    /// Every queued event, oldest first (for tests and inspection).
    pub async fn notify_queued(&self) -> StoreResult<Vec<QueuedEvent>> {
        self.notify_head(u32::MAX >> 1).await
    }

    /// The receiver accepted the event: forget it. False when it was no
    /// longer queued (dropped meanwhile).
    pub async fn notify_delivered(&self, id: i64) -> StoreResult<bool> {
        let n = self
            .pool
            .execute(
                "DELETE FROM notify_queue WHERE id = $1",
                &Args::new().int(id),
            )
            .await?;
        Ok(n > 0)
    }

    /// A delivery attempt failed with `error` (no secret in it).
    pub async fn notify_attempt_failed(&self, id: i64, error: &str) -> StoreResult<()> {
        self.pool
            .execute(
                "UPDATE notify_queue SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                &Args::new().int(id).text(error),
            )
            .await?;
        Ok(())
    }

    /// Events queued now.
    pub async fn notify_depth(&self) -> StoreResult<i64> {
        let (n,): (i64,) = self
            .pool
            .fetch_one("SELECT COUNT(*) FROM notify_queue", &Args::new())
            .await?;
        Ok(n)
    }

    /// Events ever dropped because the queue was full.
    pub async fn notify_dropped_total(&self) -> StoreResult<u64> {
        let (v,): (String,) = self
            .pool
            .fetch_one(
                "SELECT value FROM meta WHERE key = 'notify_dropped'",
                &Args::new(),
            )
            .await?;
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("notify_dropped '{v}'")))
    }

    /// The node that delivers notifications: the longest-running daemon
    /// whose heartbeat is within `ttl` (by the database's clock). A node
    /// that joins later never takes over from a live one, so delivery moves
    /// only when the sender stops or its lease lapses.
    pub async fn notify_sender(&self, ttl: std::time::Duration) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = self
            .pool
            .fetch_optional(
                &format!(
                    "SELECT id FROM nodes WHERE state = 'live' AND role = 'daemon'
                       AND heartbeat_ms >= {} - $1 ORDER BY started_at, id LIMIT 1",
                    now_ms(self.backend())
                ),
                &Args::new().int(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            )
            .await?;
        Ok(row.map(|(id,)| id))
    }

    /// The failing state of a definition, if it is failing (for tests and
    /// inspection).
    pub async fn notify_failing(&self, id: &Identity) -> StoreResult<Option<Failing>> {
        failing_in(&mut self.pool.acquire().await?.conn(), id).await
    }
}

async fn failing_in(conn: &mut Conn<'_>, id: &Identity) -> StoreResult<Option<Failing>> {
    conn.fetch_optional::<FailingRow>(
        &format!("SELECT since, first_run_id, failures FROM notify_failing WHERE {OF_IDENTITY}"),
        &Args::new().identity(id),
    )
    .await?
    .map(|r| {
        Ok(Failing {
            since: parse_ts(&r.since)?,
            first_run_id: r.first_run_id,
            failures: u32::try_from(r.failures).unwrap_or(u32::MAX),
        })
    })
    .transpose()
}

/// The node this process acts as, with its hostname from `nodes`.
async fn node_ref(conn: &mut Conn<'_>, node: Option<&str>) -> StoreResult<NodeRef> {
    let hostname = match node {
        Some(n) => conn
            .fetch_optional::<(String,)>(
                "SELECT hostname FROM nodes WHERE id = $1",
                &Args::new().text(n),
            )
            .await?
            .map(|(h,)| h),
        None => None,
    };
    Ok(NodeRef {
        id: node.map(str::to_owned),
        hostname: hostname.unwrap_or_else(|| "unknown".into()),
    })
}

/// Apply the rate-limit rule to a run that just became final and queue its
/// events, inside the transaction that wrote the final state.
pub(super) async fn on_run_final(
    conn: &mut Conn<'_>,
    backend: Backend,
    limit: u32,
    run: &Run,
    node: Option<&str>,
) -> StoreResult<()> {
    let id = &run.identity;
    let failing = failing_in(conn, id).await?;
    let (kinds, change) = event::on_run_end(failing.as_ref(), run);
    match &change {
        FailingChange::Keep => {}
        FailingChange::Set(f) => {
            conn.execute(
                "INSERT INTO notify_failing (provider, target, disk_id, def_name, since,
                     first_run_id, failures)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (provider, target, disk_id, def_name)
                 DO UPDATE SET failures = excluded.failures",
                &Args::new()
                    .identity(id)
                    .text(ts_ms(f.since))
                    .int(f.first_run_id)
                    .int(f.failures),
            )
            .await?;
        }
        FailingChange::Clear => {
            conn.execute(
                &format!("DELETE FROM notify_failing WHERE {OF_IDENTITY}"),
                &Args::new().identity(id),
            )
            .await?;
        }
    }
    if kinds.is_empty() {
        return Ok(());
    }
    let node = node_ref(conn, node).await?;
    for kind in kinds {
        let failures = (kind == EventKind::RunRecovered)
            .then_some(failing.as_ref())
            .flatten()
            .map(|f| Failures {
                count: f.failures,
                since: f.since,
                first_run_id: f.first_run_id,
            });
        let event = Event::of_run(kind, run, node.clone(), failures);
        enqueue(conn, backend, limit, &event).await?;
    }
    Ok(())
}

/// Queue a `snapshot_gone` event, inside the transaction that marked the
/// record gone.
pub(super) async fn on_snapshot_gone(
    conn: &mut Conn<'_>,
    backend: Backend,
    limit: u32,
    owner: &Identity,
    snapshot: SnapshotInfo,
    node: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let node = node_ref(conn, node).await?;
    let event = Event::snapshot_gone(owner, snapshot, node, at);
    enqueue(conn, backend, limit, &event).await
}

/// Insert `event` at the tail, then drop the oldest beyond `limit`.
async fn enqueue(
    conn: &mut Conn<'_>,
    backend: Backend,
    limit: u32,
    event: &Event,
) -> StoreResult<()> {
    let payload = serde_json::to_string(event)
        .map_err(|e| StoreError::Corrupt(format!("notification payload: {e}")))?;
    conn.execute(
        "INSERT INTO notify_queue (event_id, kind, def_name, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &Args::new()
            .text(event.event_id.as_str())
            .text(event.event.as_str())
            .text(event.definition.name.as_str())
            .text(payload)
            .text(ts_ms(event.occurred_at)),
    )
    .await?;
    tracing::debug!(
        event = event.event.as_str(),
        event_id = %event.event_id,
        definition = %event.definition.name,
        "notification queued"
    );
    // Every row at or below the (limit + 1)-th newest: nothing when the
    // queue holds no more than `limit`.
    let dropped = conn
        .execute(
            "DELETE FROM notify_queue WHERE id <= (
               SELECT id FROM notify_queue ORDER BY id DESC LIMIT 1 OFFSET $1)",
            &Args::new().int(limit),
        )
        .await?;
    record_drops(conn, backend, dropped).await
}

async fn record_drops(conn: &mut Conn<'_>, backend: Backend, dropped: u64) -> StoreResult<()> {
    if dropped == 0 {
        return Ok(());
    }
    let bump = match backend {
        Backend::Sqlite => {
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + $1 AS TEXT)
                            WHERE key = 'notify_dropped'"
        }
        Backend::Postgres => {
            "UPDATE meta SET value = (value::BIGINT + $1)::TEXT
                              WHERE key = 'notify_dropped'"
        }
    };
    conn.execute(
        bump,
        &Args::new().int(i64::try_from(dropped).unwrap_or(i64::MAX)),
    )
    .await?;
    tracing::warn!(
        dropped,
        "notification queue full ([notify] queue_limit): dropped the oldest events; \
         is the webhook receiver down?"
    );
    Ok(())
}
