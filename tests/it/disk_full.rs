//! A full disk under a SQLite store: writes fail while it is full and work
//! again once space returns, with no connection left unusable. Needs a
//! small tmpfs, so it runs only where `mount` works (as root); elsewhere,
//! and on the PostgreSQL pass, it says so and passes.

use std::path::Path;
use std::process::Command;

use chrono::{Duration, Utc};
use snapsched::domain::definition::Source;
use snapsched::domain::{Claim, Trigger};
use snapsched::store::Backend;

use crate::support::{db, fixtures};

/// A tmpfs of `size` mounted on `dir` for the guard's lifetime.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// Fill the file system of `path` until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_work_again_once_a_full_disk_has_space() {
    if db::backend() != Backend::Sqlite {
        eprintln!(
            "disk_full: skipped on {:?} (a SQLite file test)",
            db::backend()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let Some(_mnt) = Tmpfs::mount(dir.path(), "4m") else {
        eprintln!("disk_full: skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let store = db::open(&dir.path().join("s.db")).await;
    let spec = fixtures::spec("fake", "web01", "web").build();
    store
        .insert_definition(&spec, Source::Cli, None, Utc::now())
        .await
        .expect("definition");
    let filler = dir.path().join("filler");
    fill(&filler);
    let base = Utc::now();
    let mut failed = 0;
    let mut first_error = String::new();
    for i in 0..200 {
        // Each claim writes a row; with the disk full, the store refuses.
        let slot = base + Duration::seconds(i);
        match store
            .claim_run(&spec.identity, slot, Trigger::Schedule, slot)
            .await
        {
            Ok(Claim::Claimed(run)) => {
                // Keep the definition free for the next claim.
                let _ = store
                    .update_run(
                        &run,
                        snapsched::store::runs::Update {
                            state: Some(snapsched::domain::RunState::Failed),
                            ..Default::default()
                        },
                        slot,
                    )
                    .await;
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                failed += 1;
                if first_error.is_empty() {
                    first_error = e.to_string();
                }
            }
        }
    }
    assert!(failed > 0, "the full disk refused nothing");
    assert!(first_error.contains("full"), "{first_error}");

    std::fs::remove_file(&filler).expect("space returns");
    let slot = base + Duration::hours(1);
    let mut last = None;
    for _ in 0..8 {
        match store
            .claim_run(&spec.identity, slot, Trigger::Schedule, slot)
            .await
        {
            Ok(claim) => {
                last = None;
                assert!(matches!(claim, Claim::Claimed(_)), "{claim:?}");
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    assert!(
        last.is_none(),
        "the store stays unwritable after space returned: {last:?}"
    );
    store.close().await;
}

/// `GET path` on `addr`: the status code and body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

/// Poll `/healthz` (bounded) until `want(code, body)`; returns the body.
fn healthz_until(addr: &str, what: &str, want: impl Fn(u16, &str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, body) = http_get(addr, "/healthz");
        if want(code, &body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz never {what}: last {code} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The daemon on a store whose disk fills: it keeps running, `/healthz`
/// answers 503 naming the failing store (its read ping alone would pass),
/// and once space returns it is healthy again and stops cleanly.
#[test]
fn a_daemon_on_a_full_disk_reports_unhealthy_and_recovers() {
    use std::io::BufRead;
    if db::backend() != Backend::Sqlite {
        eprintln!(
            "disk_full: skipped on {:?} (a SQLite file test)",
            db::backend()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let Some(_mnt) = Tmpfs::mount(dir.path(), "8m") else {
        eprintln!("disk_full: skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let config = fixtures::write_daemon_config(dir.path(), "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("schedule = \"0 3 * * *\"", "schedule = \"* * * * * *\"");
    std::fs::write(&config, text).expect("config");
    let mut child = Command::new(crate::support::process::bin())
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the daemon logs its metrics address");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim_end_matches("/metrics").trim().to_owned();
        }
    };
    healthz_until(&addr, "200 before the disk fills", |c, _| c == 200);

    let filler = dir.path().join("filler");
    fill(&filler);
    let body = healthz_until(&addr, "503 on the full disk", |c, _| c == 503);
    assert!(
        body.starts_with("store failing: ") && body.contains("full"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the daemon exited on a full disk"
    );

    std::fs::remove_file(&filler).expect("space returns");
    assert_eq!(
        healthz_until(&addr, "200 once space returned", |c, _| c == 200),
        "ok\n"
    );
    crate::support::process::signal(&child, "-TERM");
    let exit = crate::support::process::wait_exit(&mut child, std::time::Duration::from_secs(20));
    assert!(exit.success(), "daemon exited with {exit}");
}
