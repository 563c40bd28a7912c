//! Running hook commands: a pre hook before the create request, a post hook
//! once the provider has the snapshot's point in time, and `on_failure` /
//! `on_success` after the run ends.
//!
//! Invariants:
//! - A hook is started without a shell, in its own process group, with
//!   stdin closed, in `/`, and with a cleared environment: only a fixed
//!   `PATH`, the locale, `TZ`, `HOME`, `USER`/`LOGNAME` (when the daemon
//!   has them) and the `SNAPSCHED_*` variables of the run. No secret is in
//!   any of them, whatever the daemon's own environment holds.
//! - At its timeout (or when shutdown cancels a pre hook) the whole process
//!   group is killed with SIGKILL, so a child the hook left behind does not
//!   outlive it; so is a group whose hook is still running when its task is
//!   dropped.
//! - Output (stdout and stderr together) is kept bounded: the last
//!   [`OUTPUT_MAX`] bytes are logged at debug, the last [`RECORD_TAIL`]
//!   bytes go to the run record.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::domain::definition::{DefinitionSpec, Identity};
use crate::domain::hooks::{Command, HookSpec, Hooks};

/// The most output kept per hook (the tail).
pub const OUTPUT_MAX: usize = 64 * 1024;
/// The most output of one hook kept in the run record (the tail).
pub const RECORD_TAIL: usize = 2 * 1024;
/// The `PATH` hooks get (they name their program by absolute path; this is
/// for what they run in turn).
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Variables passed through from the daemon's environment when set: none
/// can hold a secret.
const PASSED_THROUGH: [&str; 7] = [
    "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME",
];
/// How long to keep reading output after the hook exited, in case a child
/// it left behind still holds the pipe.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// The provider's and the daemon's hook settings, which definitions fall
/// back to; shared and swapped as a whole on reload.
#[derive(Clone, Default)]
pub struct HookDefaults(Arc<RwLock<Arc<HookLevels>>>);

/// Hook settings below the definition's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookLevels {
    /// `[daemon]`.
    pub daemon: HookSpec,
    /// `[providers.NAME]` by name.
    pub providers: HashMap<String, HookSpec>,
}

impl HookDefaults {
    pub fn new(levels: HookLevels) -> Self {
        HookDefaults(Arc::new(RwLock::new(Arc::new(levels))))
    }

    /// Swap in new levels (a reload).
    pub fn replace(&self, levels: HookLevels) {
        let levels = Arc::new(levels);
        match self.0.write() {
            Ok(mut l) => *l = levels,
            Err(e) => *e.into_inner() = levels,
        }
    }

    /// The hooks a run of `spec` uses: its own settings, then its
    /// provider's, then the daemon's, then the defaults.
    pub fn resolve(&self, spec: &DefinitionSpec) -> Hooks {
        let levels = self
            .0
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let provider = levels
            .providers
            .get(&spec.identity.provider)
            .cloned()
            .unwrap_or_default();
        spec.hooks.or(&provider).or(&levels.daemon).effective()
    }
}

impl std::fmt::Debug for HookDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.read() {
            Ok(l) => l.fmt(f),
            Err(_) => f.write_str("HookDefaults(poisoned)"),
        }
    }
}

/// Which hook runs, as `SNAPSCHED_PHASE` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
    OnFailure,
    OnSuccess,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
            Phase::OnFailure => "on_failure",
            Phase::OnSuccess => "on_success",
        }
    }
}

/// The `SNAPSCHED_*` variables of one run.
#[derive(Debug, Clone)]
pub struct HookEnv {
    pub identity: Identity,
    pub slot: chrono::DateTime<chrono::Utc>,
    pub snapshot_name: String,
    pub trigger: &'static str,
}

impl HookEnv {
    /// The variables for `phase`; `result` for the post hook and the
    /// notifications, `snapshot_id` when known, `error` for `on_failure`.
    pub fn vars(
        &self,
        phase: Phase,
        result: Option<&str>,
        snapshot_id: Option<&str>,
        error: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let id = &self.identity;
        let mut vars = vec![
            ("SNAPSCHED_DEFINITION", id.name.clone()),
            ("SNAPSCHED_PROVIDER", id.provider.clone()),
            ("SNAPSCHED_TARGET", id.target.clone()),
            ("SNAPSCHED_DISK", id.disk_id.to_string()),
            (
                "SNAPSCHED_SLOT",
                self.slot
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
            ("SNAPSCHED_SNAPSHOT_NAME", self.snapshot_name.clone()),
            ("SNAPSCHED_TRIGGER", self.trigger.to_owned()),
            ("SNAPSCHED_PHASE", phase.as_str().to_owned()),
        ];
        if let Some(r) = result {
            vars.push(("SNAPSCHED_RESULT", r.to_owned()));
        }
        if let Some(s) = snapshot_id {
            vars.push(("SNAPSCHED_SNAPSHOT_ID", s.to_owned()));
        }
        if let Some(e) = error {
            vars.push(("SNAPSCHED_ERROR", e.to_owned()));
        }
        vars
    }
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookStatus {
    /// It exited on its own (code, or the signal that ended it).
    Exited(ExitStatus),
    /// It ran past its timeout; its process group was killed.
    TimedOut(Duration),
    /// Shutdown came while it ran; its process group was killed.
    Cancelled,
    /// It could not be started.
    NotStarted(String),
}

/// A finished hook: how it ended and the tail of its output.
#[derive(Debug, Clone)]
pub struct HookOutcome {
    pub phase: Phase,
    pub status: HookStatus,
    /// The last [`OUTPUT_MAX`] bytes of stdout and stderr, lossily decoded.
    pub output: String,
    pub elapsed: Duration,
}

impl HookOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(&self.status, HookStatus::Exited(s) if s.success())
    }

    /// `exited with status 3`, `timed out after 5m and was killed`, ...
    pub fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match &self.status {
            HookStatus::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "ended".to_owned(),
            },
            HookStatus::TimedOut(t) => format!(
                "timed out after {} and was killed",
                humantime::format_duration(*t)
            ),
            HookStatus::Cancelled => "was killed at shutdown".to_owned(),
            HookStatus::NotStarted(e) => format!("could not be started: {e}"),
        }
    }

    /// The last [`RECORD_TAIL`] bytes of the output, trimmed.
    pub fn tail(&self) -> &str {
        let out = self.output.trim_end();
        let mut start = out.len().saturating_sub(RECORD_TAIL);
        while !out.is_char_boundary(start) {
            start += 1;
        }
        &out[start..]
    }

    /// One entry of the run record's hook output.
    pub fn record(&self) -> String {
        let tail = self.tail();
        if tail.is_empty() {
            format!("{}: {}", self.phase.as_str(), self.describe())
        } else {
            format!("{}: {}\n{tail}", self.phase.as_str(), self.describe())
        }
    }
}

/// Kills a process group when dropped while armed: a run task aborted at
/// the end of the shutdown grace must not leave a hook running.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (already gone) is fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last [`OUTPUT_MAX`] bytes written to it.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > OUTPUT_MAX {
            let cut = self.0.len() - OUTPUT_MAX;
            self.0.drain(..cut);
        }
    }
}

fn read_into<R: AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    tail: Arc<Mutex<Tail>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut t) = tail.lock() {
                        t.push(&buf[..n]);
                    }
                }
            }
        }
    })
}

/// Run `command` for `phase` with `vars`, killing its process group at
/// `timeout` or when `cancel` fires.
pub async fn run_hook(
    phase: Phase,
    command: &Command,
    vars: &[(&'static str, String)],
    timeout: Duration,
    cancel: Option<&CancellationToken>,
) -> HookOutcome {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(command.program());
    cmd.args(command.args())
        .env_clear()
        .env("PATH", HOOK_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in PASSED_THROUGH {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let outcome = |status, output: String| HookOutcome {
        phase,
        status,
        output,
        elapsed: started.elapsed(),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return outcome(HookStatus::NotStarted(e.to_string()), String::new()),
    };
    let mut guard = GroupGuard(child.id().map(|id| Pid::from_raw(id as i32)));
    let tail = Arc::new(Mutex::new(Tail::default()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(read_into(out, tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(read_into(err, tail.clone()));
    }
    let never = CancellationToken::new();
    let cancel = cancel.unwrap_or(&never);
    let status = tokio::select! {
        waited = child.wait() => {
            // It exited: what it left in its group is its own business.
            guard.0 = None;
            match waited {
                Ok(s) => HookStatus::Exited(s),
                Err(e) => HookStatus::NotStarted(e.to_string()),
            }
        }
        _ = tokio::time::sleep(timeout) => {
            guard.kill();
            let _ = child.wait().await;
            HookStatus::TimedOut(timeout)
        }
        _ = cancel.cancelled() => {
            guard.kill();
            let _ = child.wait().await;
            HookStatus::Cancelled
        }
    };
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN_AFTER_EXIT, r).await.is_err() {
            abort.abort();
        }
    }
    let output = tail
        .lock()
        .map(|t| String::from_utf8_lossy(&t.0).into_owned())
        .unwrap_or_default();
    outcome(status, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str]) -> Command {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        Command::parse("pre_hook", &argv).unwrap()
    }

    #[test]
    fn defaults_resolve_by_provider_and_swap_on_reload() {
        let spec = crate::domain::definition::RawDefinition {
            name: "db".into(),
            provider: "lab".into(),
            target: "db01".into(),
            schedule: Some("@daily".into()),
            retention: Some(1),
            ..Default::default()
        }
        .validate(crate::domain::ProviderKind::Fake)
        .unwrap();
        let level = |p: &str| HookSpec {
            pre_hook: Some(cmd(&[p])),
            ..Default::default()
        };
        let defaults = HookDefaults::new(HookLevels {
            daemon: level("/daemon"),
            providers: HashMap::from([("other".to_owned(), level("/other"))]),
        });
        assert_eq!(defaults.resolve(&spec).pre, Some(cmd(&["/daemon"])));
        let shared = defaults.clone();
        shared.replace(HookLevels {
            daemon: level("/daemon"),
            providers: HashMap::from([("lab".to_owned(), level("/lab"))]),
        });
        assert_eq!(defaults.resolve(&spec).pre, Some(cmd(&["/lab"])));
        let mut own = spec.clone();
        own.hooks.pre_hook = Some(cmd(&["/own"]));
        assert_eq!(defaults.resolve(&own).pre, Some(cmd(&["/own"])));
    }

    #[tokio::test]
    async fn exit_status_and_output_are_captured() {
        let out = run_hook(
            Phase::Pre,
            &cmd(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
            &[],
            Duration::from_secs(30),
            None,
        )
        .await;
        assert!(!out.succeeded());
        assert_eq!(out.describe(), "exited with status 3");
        assert!(
            out.output.contains("out") && out.output.contains("err"),
            "{out:?}"
        );
        assert!(out.record().starts_with("pre: exited with status 3\n"));
    }

    #[tokio::test]
    async fn output_is_bounded_to_its_tail() {
        let out = run_hook(
            Phase::Post,
            &cmd(&[
                "/bin/sh",
                "-c",
                "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done",
            ]),
            &[],
            Duration::from_secs(60),
            None,
        )
        .await;
        assert!(out.succeeded(), "{}", out.describe());
        assert_eq!(out.output.len(), OUTPUT_MAX);
        assert!(out
            .output
            .trim_end()
            .ends_with("line-2999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(!out.output.contains("line-0-"));
        assert!(out.tail().len() <= RECORD_TAIL);
    }

    #[tokio::test]
    async fn the_environment_is_cleared_but_for_the_run_variables() {
        let out = run_hook(
            Phase::Pre,
            &cmd(&["/usr/bin/env"]),
            &[("SNAPSCHED_PHASE", "pre".to_owned())],
            Duration::from_secs(30),
            None,
        )
        .await;
        assert!(out.succeeded());
        for line in out.output.lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(
                name == "PATH" || name == "SNAPSCHED_PHASE" || PASSED_THROUGH.contains(&name),
                "unexpected variable {line}"
            );
        }
        assert!(out.output.contains("SNAPSCHED_PHASE=pre"));
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_not_panicked() {
        let out = run_hook(
            Phase::Pre,
            &cmd(&["/nonexistent/hook"]),
            &[],
            Duration::from_secs(5),
            None,
        )
        .await;
        assert!(matches!(out.status, HookStatus::NotStarted(_)));
        assert!(out.describe().starts_with("could not be started"));
    }

    #[tokio::test]
    async fn cancel_kills_the_hook() {
        let token = CancellationToken::new();
        token.cancel();
        let out = run_hook(
            Phase::Pre,
            &cmd(&["/bin/sleep", "60"]),
            &[],
            Duration::from_secs(60),
            Some(&token),
        )
        .await;
        assert_eq!(out.status, HookStatus::Cancelled);
        assert!(out.elapsed < Duration::from_secs(30));
    }
}
