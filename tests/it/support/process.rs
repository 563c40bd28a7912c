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
