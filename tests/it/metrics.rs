//! The `[metrics] listen` endpoint of the real daemon: `/metrics` is scraped
//! and parsed as Prometheus text, `/healthz` answers 200 while the loop runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::notify::wait_exit;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse the Prometheus text exposition format (comments, `name value`,
/// `name{k="v",...} value`). Any malformed line is an error.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| format!("unclosed labels: {line}"))?;
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest
                        .split_once("=\"")
                        .ok_or_else(|| format!("bad label in {line}"))?;
                    let end = after
                        .find('"')
                        .ok_or_else(|| format!("unterminated label value in {line}"))?;
                    labels.insert(k.to_owned(), after[..end].to_owned());
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_owned(), labels)
            }
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name in {line}"));
        }
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[test]
fn metrics_scrape_and_healthz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::notify::write_config(dir.path(), "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    // Fire every second so runs (and provider requests) happen during the test.
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
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no metrics listen line; log: {log:#?}"));
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.trim_end_matches("/metrics").trim();
            break addr.parse().expect("listen address parses");
        }
        log.push(line);
    };

    // Bounded polling: the first runs finish within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let (code, body) = get(addr, "/metrics");
        assert_eq!(code, 200, "/metrics: {body}");
        let samples = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let succeeded = find(
            &samples,
            "snapsched_runs_total",
            &[("definition", "web"), ("result", "succeeded")],
        );
        if succeeded.is_some_and(|s| s.value >= 1.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "no successful run in /metrics:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        find(&samples, "snapsched_definitions", &[]).map(|s| s.value),
        Some(1.0)
    );
    let next = find(
        &samples,
        "snapsched_next_run_timestamp_seconds",
        &[("definition", "web")],
    )
    .expect("next run gauge");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 5.0..=now + 5.0).contains(&next.value),
        "next run {} vs now {now}",
        next.value
    );

    let (code, body) = get(addr, "/healthz");
    assert_eq!(code, 200, "/healthz: {body}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = wait_exit(&mut child, Duration::from_secs(20));
    assert!(exit.success(), "daemon exited with {exit}");
}

#[test]
fn parser_rejects_garbage() {
    assert!(parse("foo{a=\"1\" 2").is_err());
    assert!(parse("foo bar").is_err());
    let s = parse("# HELP x y\nx_total{a=\"b\",le=\"+Inf\"} 3\n").expect("parses");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].labels["le"], "+Inf");
}
