//! Several real `snapsched daemon` processes sharing one store, for the
//! multi-node tests: each node has a directory of its own (config file,
//! one log per life) and all of them name the same PostgreSQL schema.
//!
//! Invariants: a node is only ever signalled by the pid of the child this
//! module spawned; every child still running when the [`Cluster`] is dropped
//! is continued and killed, so a failing test leaves no daemon behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::process::signal;
use super::{write_file, TestEnv};

/// The line a daemon logs once its scheduler runs.
pub const STARTED: &str = "scheduler started";

/// One daemon of the cluster.
pub struct Node {
    pub env: TestEnv,
    child: Option<Child>,
    /// How many times it was spawned; the current log is `life - 1`.
    lives: usize,
    stopped: bool,
}

impl Node {
    fn log_path(&self, life: usize) -> PathBuf {
        self.env.path().join(format!("life-{life}.log"))
    }

    /// The current life's log.
    pub fn log(&self) -> String {
        match self.lives {
            0 => String::new(),
            n => std::fs::read_to_string(self.log_path(n - 1)).unwrap_or_default(),
        }
    }

    /// The pid of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// Daemons on one store: every node's config names the same PostgreSQL
/// schema (see [`super::db::database_setting`]).
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Extra environment for every daemon (the provider token).
    envs: Vec<(String, String)>,
}

impl Cluster {
    /// `n` nodes; `config(i)` is node `i`'s whole config file, written as is.
    pub fn new(n: usize, envs: &[(&str, &str)], config: impl Fn(usize) -> String) -> Cluster {
        let nodes = (0..n)
            .map(|i| {
                let env = TestEnv::new("");
                // Not `write_config`: the text already names the shared store.
                write_file(&env.config, &config(i), 0o600);
                Node {
                    env,
                    child: None,
                    lives: 0,
                    stopped: false,
                }
            })
            .collect();
        Cluster {
            nodes,
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Start node `i` (which must not be running); returns its pid.
    pub fn spawn(&mut self, i: usize) -> u32 {
        let envs = self.envs.clone();
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is already running");
        let log = std::fs::File::create(node.log_path(node.lives)).expect("log file");
        let mut cmd = node.env.command(&["daemon"]);
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn snapsched daemon");
        node.lives += 1;
        node.stopped = false;
        let pid = child.id();
        node.child = Some(child);
        pid
    }

    /// Whether node `i`'s current life logged `needle`.
    pub fn logged(&self, i: usize, needle: &str) -> bool {
        self.nodes[i].log().contains(needle)
    }

    /// Wait until node `i` logs `needle`; fail with the logs after `within`
    /// or at once if the process exited.
    pub fn wait_for_log(&mut self, i: usize, needle: &str, within: Duration) {
        self.wait_for_any_log(i, &[needle], within);
    }

    /// Wait until node `i`'s current life logs any of `needles`; fail
    /// with the logs after `within` or at once if the process exited.
    pub fn wait_for_any_log(&mut self, i: usize, needles: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let log = self.nodes[i].log();
            if needles.iter().any(|n| log.contains(n)) {
                return;
            }
            if let Some(status) = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!(
                    "node {i} exited ({status}) before logging any of {needles:?}\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not log any of {needles:?} within {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL node `i` and reap it; fails if it had already exited by
    /// itself. Returns its pid.
    pub fn kill(&mut self, i: usize) -> u32 {
        let logs = self.logs();
        let node = &mut self.nodes[i];
        let mut child = node.child.take().expect("node is running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("node {i} exited by itself ({status}) before the kill\n{logs}");
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        node.stopped = false;
        child.id()
    }

    /// Reap node `i`, which exited by itself, so it can be spawned again.
    pub fn reap(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("node was spawned");
        child.wait().expect("reap");
    }

    /// SIGSTOP node `i`.
    pub fn stop(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        signal(node.child.as_ref().expect("node is running"), "-STOP");
        node.stopped = true;
    }

    /// SIGCONT node `i`.
    pub fn cont(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        signal(node.child.as_ref().expect("node is running"), "-CONT");
        node.stopped = false;
    }

    /// Nodes whose process exited by itself: (index, status).
    pub fn exited(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        self.nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(i, n)| {
                let status = n.child.as_mut()?.try_wait().expect("try_wait")?;
                Some((i, status))
            })
            .collect()
    }

    /// SIGTERM every running node once it logged [`STARTED`] and require a
    /// clean exit.
    pub fn terminate_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            if self.nodes[i].stopped {
                self.cont(i);
            }
            self.wait_for_log(i, STARTED, Duration::from_secs(60));
            signal(self.nodes[i].child.as_ref().expect("running"), "-TERM");
        }
        for i in 0..self.nodes.len() {
            let Some(mut child) = self.nodes[i].child.take() else {
                continue;
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "node {i} did not exit within 20s of SIGTERM\n{}",
                        self.logs_tail(60)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(
                status.success(),
                "node {i}: SIGTERM: exit {status}\n{}",
                self.logs()
            );
        }
    }

    /// The last lines of every node's every life, for failure messages.
    pub fn logs(&self) -> String {
        self.logs_tail(20)
    }

    /// The last `n` lines of every log.
    pub fn logs_tail(&self, n: usize) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for life in 0..node.lives {
                let text = std::fs::read_to_string(node.log_path(life)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- node {i}, life {life} ---\n"));
                for l in &lines[lines.len().saturating_sub(n)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The last `n` lines of node `i`'s current life.
    pub fn tail(&self, i: usize, n: usize) -> String {
        let text = self.nodes[i].log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Every line of every log containing `needle`, prefixed with its node
    /// and life.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for life in 0..node.lives {
                let text = std::fs::read_to_string(node.log_path(life)).unwrap_or_default();
                out.extend(
                    text.lines()
                        .filter(|l| l.contains(needle))
                        .map(|l| format!("node {i} life {life}: {l}")),
                );
            }
        }
        out
    }

    /// With `SNAPSCHED_CLUSTER_LOG_DIR` set, copy every log there (as
    /// `TEST/node-I-life-L.log`), for reading a failure after the test's
    /// directories are gone.
    fn keep_logs(&self) {
        let Some(dir) = std::env::var_os("SNAPSCHED_CLUSTER_LOG_DIR") else {
            return;
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("cluster")
            .replace("::", "-");
        let dir = PathBuf::from(dir).join(test);
        let _ = std::fs::create_dir_all(&dir);
        for (i, node) in self.nodes.iter().enumerate() {
            for life in 0..node.lives {
                let _ = std::fs::copy(
                    node.log_path(life),
                    dir.join(format!("node-{i}-life-{life}.log")),
                );
            }
        }
    }

    /// Directory of node `i`.
    pub fn dir(&self, i: usize) -> &Path {
        self.nodes[i].env.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.keep_logs();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if node.stopped {
                    let _ = std::process::Command::new("kill")
                        .args(["-CONT", &child.id().to_string()])
                        .status();
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
