//! The daemon speaks sd_notify: the real binary is started with
//! `NOTIFY_SOCKET` pointing at a datagram socket the test owns, and the
//! messages are read back in order through SIGHUP and SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fixtures::write_daemon_config;
use crate::support::process::{signal, wait_exit};

const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Read datagrams until one satisfies `want`; everything read so far is
/// returned. Fails with the messages seen when the deadline passes.
fn read_until(sock: &UnixDatagram, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting; messages so far: {seen:#?}"
        );
        sock.set_read_timeout(Some(left)).expect("read timeout set");
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(msg.clone());
                if want(&msg) {
                    return msg;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("timed out waiting; messages so far: {seen:#?}")
            }
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn ready_status_watchdog_reload_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_daemon_config(dir.path(), "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket binds");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");

    let mut child = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .env("NOTIFY_SOCKET", &sock_path)
        // 2 s: pings are due every 0.5 s, so every loop tick sends one.
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone().expect("log clone"))
        .spawn()
        .expect("daemon starts");

    let mut seen = Vec::new();
    read_until(&sock, &mut seen, |m| has_line(m, "READY=1"));
    let status = read_until(&sock, &mut seen, |m| {
        m.starts_with("STATUS=") || m.lines().any(|l| l.starts_with("STATUS="))
    });
    assert!(
        status.contains("1 definitions") && status.contains("next web at"),
        "unexpected status: {status:?}"
    );
    read_until(&sock, &mut seen, |m| has_line(m, "WATCHDOG=1"));
    // The status line is sent only when it changes; two pings in a row
    // without a repeated STATUS shows that.
    read_until(&sock, &mut seen, |m| has_line(m, "WATCHDOG=1"));
    let statuses = seen
        .iter()
        .filter(|m| m.lines().any(|l| l.starts_with("STATUS=")))
        .count();
    assert_eq!(statuses, 1, "STATUS repeated without a change: {seen:#?}");

    signal(&child, "-HUP");
    let reloading = read_until(&sock, &mut seen, |m| has_line(m, "RELOADING=1"));
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC: {reloading:?}"
    );
    read_until(&sock, &mut seen, |m| has_line(m, "READY=1"));

    signal(&child, "-TERM");
    read_until(&sock, &mut seen, |m| has_line(m, "STOPPING=1"));
    let exit = wait_exit(&mut child, Duration::from_secs(20));
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(exit.success(), "daemon exited with {exit}; log:\n{log}");
    assert!(log.contains("configuration reloaded"), "log:\n{log}");
}

/// The definitions in the daemon's store, read through a config of its own
/// (the daemon's file may be invalid on purpose).
fn definitions(dir: &Path) -> Vec<(String, i64)> {
    let probe = dir.join("probe.toml");
    let text = format!(
        "[daemon]\ndatabase = \"{}\"\n\n[providers.lab]\nkind = \"fake\"\n",
        dir.join("snapsched.db").display()
    );
    std::fs::write(&probe, text).expect("probe config written");
    let out = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&probe)
        .args(["def", "list", "--json"])
        .output()
        .expect("def list runs");
    assert!(
        out.status.success(),
        "def list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("def list JSON");
    let mut defs: Vec<(String, i64)> = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_owned(),
                d["retention"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    defs.sort();
    defs
}

#[test]
fn an_invalid_config_on_sighup_is_logged_and_the_old_one_stays_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_daemon_config(dir.path(), "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket binds");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("daemon starts");
    let mut seen = Vec::new();
    read_until(&sock, &mut seen, |m| has_line(m, "READY=1"));
    assert_eq!(definitions(dir.path()), vec![("web".to_owned(), 3)]);

    // A new definition next to a broken one: nothing of it may apply.
    let base = std::fs::read_to_string(&config).expect("config readable");
    let broken = base.replace("retention = 3", "retention = -1")
        + "\n[[definitions]]\nname = \"db\"\nprovider = \"lab\"\ntarget = \"db01\"\nschedule = \"0 4 * * *\"\nretention = 7\n";
    std::fs::write(&config, &broken).expect("config rewritten");
    signal(&child, "-HUP");
    read_until(&sock, &mut seen, |m| has_line(m, "RELOADING=1"));
    read_until(&sock, &mut seen, |m| has_line(m, "READY=1"));
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        text.contains("reload failed; keeping the previous configuration")
            && text.contains("retention"),
        "the failed reload is not logged with the key:\n{text}"
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "daemon died:\n{text}"
    );
    assert_eq!(definitions(dir.path()), vec![("web".to_owned(), 3)]);

    // Fixed: the next reload applies it.
    std::fs::write(&config, broken.replace("retention = -1", "retention = 5")).expect("fixed");
    signal(&child, "-HUP");
    read_until(&sock, &mut seen, |m| has_line(m, "RELOADING=1"));
    read_until(&sock, &mut seen, |m| has_line(m, "READY=1"));
    assert_eq!(
        definitions(dir.path()),
        vec![("db".to_owned(), 7), ("web".to_owned(), 5)]
    );

    signal(&child, "-TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(20));
    assert!(exit.success(), "daemon exited with {exit}");
}

/// A daemon whose log reader went away (a closed stderr pipe) keeps
/// scheduling: log lines it cannot write are dropped, not a panic.
#[test]
fn daemon_survives_a_closed_log_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_daemon_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("0 3 * * *", "* * * * * *")).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    // Read the first line, then close the pipe.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut byte = [0u8; 1];
    loop {
        match std::io::Read::read(&mut stderr, &mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => {}
            other => panic!("daemon log ended before its first line: {other:?}"),
        }
    }
    drop(stderr);
    let closed = chrono::Utc::now();

    // Bounded polling on the store: two runs that started after the close
    // (each logs several lines) show the daemon alive and scheduling.
    let db = dir.path().join("snapsched.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the daemon exited with {status} after its log pipe closed");
        }
        let later = rt.block_on(async {
            let store = snapsched::store::Store::open(&db).await.ok()?;
            let runs = store.history(Some("web"), 100).await.ok();
            store.close().await;
            runs.map(|r| r.iter().filter(|r| r.created_at > closed).count())
        });
        if later.is_some_and(|n| n >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no runs after the log pipe closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "-TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(20));
    assert!(exit.success(), "daemon exited with {exit}");
}

/// Under the journal (`JOURNAL_STREAM` names the daemon's stderr) every
/// line starts with its syslog priority, so `journalctl -p` can filter, and
/// a line about a definition carries its identity as separate fields.
#[test]
fn journal_lines_carry_the_priority_and_the_identity_as_fields() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_daemon_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("0 3 * * *", "* * * * * *")).expect("config");
    let log_path = dir.path().join("journal.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let meta = log.metadata().expect("stat");
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapsched"))
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("daemon starts");
    let deadline = Instant::now() + READ_TIMEOUT;
    let ended = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("run ended")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no run ended within {READ_TIMEOUT:?}; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    signal(&child, "-TERM");
    let exit = wait_exit(&mut child, READ_TIMEOUT);
    assert!(exit.success(), "daemon exited with {exit}");
    assert!(ended.starts_with("<6>"), "an info line: {ended}");
    for field in ["definition=web", "provider=lab", "target=web01", "disk=1"] {
        assert!(ended.contains(field), "{field} missing: {ended}");
    }
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        text.lines()
            .all(|l| l.starts_with('<') || l.starts_with(' ')),
        "every line has a priority:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colours in the journal:\n{text}"
    );
}
