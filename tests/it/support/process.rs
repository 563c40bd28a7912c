//! Running the real `snapsched` binary: where it is, what a finished
//! process said, and signalling and reaping a daemon.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The binary under test: `$SNAPSCHED_TEST_BIN` when set (to test an
/// installed or release build, or when several checkouts share one target
/// directory and overwrite each other's `target/debug/snapsched`), else the
/// one Cargo built for this test run.
pub fn bin() -> PathBuf {
    std::env::var_os("SNAPSCHED_TEST_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_snapsched")))
}

/// Split a finished process into (exit code, stdout, stderr). A process
/// killed by a signal reports exit code -1.
pub fn outcome(o: Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Fail if the process panicked.
pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
}

/// Send `sig` (`-TERM`, `-HUP`, ...) to the child; fail if `kill` fails.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} failed");
}

/// Wait for exit with a deadline; kill the child if it overstays.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the daemon did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `snapsched daemon` a test started, its stderr in a log file; killed
/// (and reaped) when dropped, so a failing test leaves no daemon behind.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Spawn `cmd` (a `daemon` command) with stderr to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn snapsched daemon");
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Fail (with the log's tail) if the daemon has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("the daemon was not stopped");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the daemon exited ({status})\n{}", self.tail(30));
        }
    }

    /// Wait until the log holds `needle`; fail after `within`, or at once
    /// if the daemon exited.
    pub fn wait_for_log(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the daemon did not log {needle:?} within {within:?}\n{}",
                self.tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait (at most `within`) for the exit, which must be
    /// clean.
    pub fn terminate(mut self, within: Duration) {
        let mut child = self.child.take().expect("the daemon was not stopped");
        signal(&child, "-TERM");
        let status = wait_exit(&mut child, within);
        assert!(
            status.success(),
            "SIGTERM: the daemon exited with {status}\n{}",
            self.tail(30)
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
