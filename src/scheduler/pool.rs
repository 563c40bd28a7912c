//! The run pool: claimed runs waiting for a concurrency permit, and the
//! tasks of the runs that hold one.
//!
//! Invariants:
//! - At most `max_concurrent_runs` runs execute at once: a task is spawned
//!   only with a permit, and holds it until its run ends.
//! - Only started runs are tasks. A queued run is a plain value: a task per
//!   queued run would hold a whole run future (several KB) for every one of
//!   thousands of slots due together.
//! - Runs start in submission order.
//! - An identity counts as running from [`RunPool::submit`] until its task
//!   ends (or it is dropped because it cannot start), however the task
//!   ends; a slot due meanwhile is an overlap.
//!
//! What a run *is* stays outside: a [`Launch`] turns a job into its future,
//! so the pool is tested below with jobs that only wait.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::domain::Identity;

/// Turns a queued job into the future that executes it.
pub(crate) trait Launch {
    type Job: Send + 'static;

    /// The definition the job runs for.
    fn identity(job: &Self::Job) -> &Identity;

    /// The job's future, or `None` when it cannot start any more (it is
    /// then dropped).
    fn launch(&self, job: Self::Job) -> Option<impl Future<Output = ()> + Send + 'static>;
}

type Running = crate::run::InFlight;

pub(crate) struct RunPool<L: Launch> {
    launcher: L,
    permits: Arc<Semaphore>,
    /// Claimed runs waiting for a permit, oldest first.
    queued: VecDeque<L::Job>,
    /// Identities of queued and executing runs.
    running: Running,
    tasks: JoinSet<()>,
}

/// Held by a run task: releases the permit, then the identity, when the
/// task ends (also by panic or abort).
struct Lease {
    permit: Option<OwnedSemaphorePermit>,
    running: Running,
    identity: Identity,
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.permit.take());
        release(&self.running, &self.identity);
    }
}

fn release(running: &Running, identity: &Identity) {
    if let Ok(mut r) = running.lock() {
        r.remove(identity);
    }
}

impl<L: Launch> RunPool<L> {
    /// A pool running at most `max` (at least one) jobs at once.
    pub fn new(launcher: L, max: usize) -> Self {
        RunPool {
            launcher,
            permits: Arc::new(Semaphore::new(max.max(1))),
            queued: VecDeque::new(),
            running: Arc::default(),
            tasks: JoinSet::new(),
        }
    }

    /// Queue a job; it starts as soon as a permit is free.
    pub fn submit(&mut self, job: L::Job) {
        self.enqueue(job);
        self.start_queued();
    }

    /// Queue a job without starting anything yet (it counts as running at
    /// once); [`RunPool::start_queued`] starts it.
    pub fn enqueue(&mut self, job: L::Job) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(L::identity(&job).clone());
        }
        self.queued.push_back(job);
    }

    /// The identities in flight, shared with whatever else drives runs (a
    /// tag target's fan-out registers its members here).
    pub fn in_flight_set(&self) -> Running {
        self.running.clone()
    }

    /// The launcher, to change how later jobs start.
    pub fn launcher_mut(&mut self) -> &mut L {
        &mut self.launcher
    }

    /// True while a job of `identity` is queued or executing.
    pub fn is_running(&self, identity: &Identity) -> bool {
        self.running
            .lock()
            .map(|r| r.contains(identity))
            .unwrap_or(false)
    }

    /// Jobs queued or executing.
    pub fn in_flight(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// True while any job executes (or ended and is not yet reaped).
    pub fn has_tasks(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Wait for an executing job to end. Resolves to `None` at once when
    /// none executes.
    pub async fn next_finished(&mut self) -> Option<()> {
        self.tasks.join_next().await.map(|_| ())
    }

    /// Collect every ended job at once (with many runs ending together, one
    /// loop turn per run would repeat the loop's work for each), then start
    /// queued jobs on the freed permits.
    pub fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        self.start_queued();
    }

    /// Start queued jobs while permits last.
    pub fn start_queued(&mut self) {
        while !self.queued.is_empty() {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return;
            };
            let Some(job) = self.queued.pop_front() else {
                return;
            };
            let identity = L::identity(&job).clone();
            let Some(run) = self.launcher.launch(job) else {
                release(&self.running, &identity);
                continue;
            };
            let lease = Lease {
                permit: Some(permit),
                running: self.running.clone(),
                identity,
            };
            self.tasks.spawn(async move {
                run.await;
                drop(lease);
            });
        }
    }

    /// Run every queued and executing job to its end.
    pub async fn drain(&mut self) {
        loop {
            self.start_queued();
            if self.tasks.join_next().await.is_none() {
                return;
            }
        }
    }

    /// Wait up to `grace` for executing jobs, then abort the rest (queued
    /// jobs never start). Returns how many were aborted.
    pub async fn shut_down(&mut self, grace: Duration) -> usize {
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            return 0;
        }
        let left = self.tasks.len();
        self.tasks.abort_all();
        left
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Jobs that hold their slot for a while and record how many overlap.
    #[derive(Default, Clone)]
    struct Waiting {
        now: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
        done: Arc<AtomicUsize>,
    }

    struct Job {
        id: Identity,
        hold: Duration,
        startable: bool,
    }

    impl Launch for Waiting {
        type Job = Job;

        fn identity(job: &Job) -> &Identity {
            &job.id
        }

        fn launch(&self, job: Job) -> Option<impl Future<Output = ()> + Send + 'static> {
            if !job.startable {
                return None;
            }
            let this = self.clone();
            Some(async move {
                let n = this.now.fetch_add(1, Ordering::SeqCst) + 1;
                this.peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(job.hold).await;
                this.now.fetch_sub(1, Ordering::SeqCst);
                this.done.fetch_add(1, Ordering::SeqCst);
            })
        }
    }

    fn job(i: usize) -> Job {
        Job {
            id: Identity {
                provider: "lab".into(),
                target: format!("vm{i}"),
                disk_id: 0,
                name: "daily".into(),
            },
            hold: Duration::from_secs(1 + (i % 3) as u64),
            startable: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_at_once_and_every_job_runs() {
        let w = Waiting::default();
        let mut pool = RunPool::new(w.clone(), 3);
        for i in 0..20 {
            pool.submit(job(i));
        }
        assert_eq!(pool.in_flight(), 20, "queued jobs count as in flight");
        assert!(pool.is_running(&job(7).id));
        pool.drain().await;
        assert_eq!(w.done.load(Ordering::SeqCst), 20);
        assert_eq!(w.peak.load(Ordering::SeqCst), 3);
        assert_eq!(pool.in_flight(), 0);
        assert!(!pool.is_running(&job(7).id));
    }

    #[tokio::test(start_paused = true)]
    async fn reaping_starts_queued_jobs_on_freed_permits() {
        let w = Waiting::default();
        let mut pool = RunPool::new(w.clone(), 1);
        pool.submit(job(0));
        pool.submit(job(1));
        assert!(pool.has_tasks());
        assert_eq!(pool.next_finished().await, Some(()));
        pool.reap();
        assert_eq!(w.done.load(Ordering::SeqCst), 1);
        assert_eq!(pool.in_flight(), 1);
        assert!(pool.is_running(&job(1).id));
        pool.drain().await;
        assert_eq!(w.peak.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_enqueued_job_waits_for_start_queued_but_counts_as_running() {
        let w = Waiting::default();
        let mut pool = RunPool::new(w.clone(), 2);
        pool.enqueue(job(0));
        pool.enqueue(job(1));
        assert!(pool.is_running(&job(0).id));
        assert!(!pool.has_tasks(), "started before start_queued");
        pool.start_queued();
        assert!(pool.has_tasks());
        pool.drain().await;
        assert_eq!(w.done.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_that_cannot_start_is_dropped_and_frees_its_identity() {
        let w = Waiting::default();
        let mut pool = RunPool::new(w.clone(), 2);
        pool.submit(Job {
            startable: false,
            ..job(0)
        });
        assert_eq!(pool.in_flight(), 0);
        assert!(!pool.has_tasks());
        assert_eq!(pool.next_finished().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_grace_then_aborts_the_rest() {
        let w = Waiting::default();
        let mut pool = RunPool::new(w.clone(), 4);
        for i in 0..2 {
            pool.submit(Job {
                hold: Duration::from_secs(100),
                ..job(i)
            });
        }
        pool.submit(job(2));
        assert_eq!(pool.shut_down(Duration::from_secs(10)).await, 2);
        assert_eq!(w.done.load(Ordering::SeqCst), 1);
        // Aborted tasks release their permits and identities once dropped.
        pool.drain().await;
        assert_eq!(w.done.load(Ordering::SeqCst), 1);
        assert_eq!(pool.in_flight(), 0);
    }
}
