//! Counting what the daemons ask of PostgreSQL: a loopback TCP proxy in
//! front of the server that counts the statements each node sends, and the
//! server's own transaction counters (`pg_stat_database`).
//!
//! The proxy reads only the client's side of the protocol (v3): after the
//! untyped start-up packets every message is a type byte and a length; a
//! simple query (`Q`) or an extended-protocol execute (`E`) is one statement
//! (sqlx sends `BEGIN` and `COMMIT` as simple queries, so they count too).
//! The daemons connect through it with `sslmode=disable`, so the stream is
//! readable. One proxy per node gives per-node figures that no other client
//! of the server can disturb.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The protocol version 3.0 in a start-up packet; other codes there are
/// requests (SSL, GSS encryption, cancel) that precede or replace it.
const PROTOCOL_3: u32 = 196_608;

/// Reads the frontend (client → server) byte stream and counts statements.
#[derive(Debug, Default)]
pub struct Frontend {
    /// Past the start-up packet: typed messages from here on.
    started: bool,
    buf: Vec<u8>,
    /// Statements seen (`Q` and `E` messages).
    pub statements: u64,
}

impl Frontend {
    /// Take the next bytes the client sent; returns how many statements
    /// they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.buf.extend_from_slice(bytes);
        let before = self.statements;
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if !self.started {
                let Some(len) = be_u32(rest, 0) else { break };
                let len = len as usize;
                if len < 8 || rest.len() < len {
                    break;
                }
                if be_u32(rest, 4) == Some(PROTOCOL_3) {
                    self.started = true;
                }
                at += len;
            } else {
                let (Some(&tag), Some(len)) = (rest.first(), be_u32(rest, 1)) else {
                    break;
                };
                let total = 1 + len as usize;
                if rest.len() < total {
                    break;
                }
                if tag == b'Q' || tag == b'E' {
                    self.statements += 1;
                }
                at += total;
            }
        }
        self.buf.drain(..at);
        self.statements - before
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A listening proxy to `upstream`; statements counted over every
/// connection. Stops (its tasks aborted) when dropped.
pub struct CountingProxy {
    pub port: u16,
    count: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CountingProxy {
    pub async fn start(upstream: String) -> anyhow::Result<CountingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let count = Arc::new(AtomicU64::new(0));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let count = count.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let task = tokio::spawn(relay(client, server, count.clone()));
                    conns.lock().unwrap_or_else(|e| e.into_inner()).push(task);
                }
            })
        };
        Ok(CountingProxy {
            port,
            count,
            accept,
            conns,
        })
    }

    /// Statements counted so far.
    pub fn statements(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.conns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.abort();
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, count: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    let mut frontend = Frontend::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(frontend.feed(&buf[..n]), Ordering::Relaxed);
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
}

/// One reading of the server's transaction counter for a database.
#[derive(Debug, Clone, Copy)]
pub struct XactSample {
    /// `xact_commit + xact_rollback`.
    pub xacts: i64,
    pub at: std::time::Instant,
}

/// Transactions per second between two readings, less `own` transactions
/// the readings themselves made; `None` if the counter went backwards (the
/// statistics were reset) or no time passed.
pub fn xacts_per_second(before: XactSample, after: XactSample, own: i64) -> Option<f64> {
    let secs = after.at.checked_duration_since(before.at)?.as_secs_f64();
    let delta = after.xacts - before.xacts;
    if delta < 0 || secs <= 0.0 {
        return None;
    }
    Some((delta - own).max(0) as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup(code: u32, body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32 + 8).to_be_bytes().to_vec();
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn counts_simple_queries_and_executes_after_start_up() {
        let mut stream = startup(80_877_103, b""); // SSLRequest, answered 'N'
        stream.extend(startup(PROTOCOL_3, b"user\0postgres\0\0"));
        stream.extend(msg(b'p', b"password\0")); // not a statement
        stream.extend(msg(b'Q', b"BEGIN\0"));
        stream.extend(msg(b'P', b"\0SELECT 1\0\0\0"));
        stream.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
        stream.extend(msg(b'E', b"\0\0\0\0\0"));
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'Q', b"COMMIT\0"));
        let mut f = Frontend::default();
        assert_eq!(f.feed(&stream), 3);
        assert_eq!(f.statements, 3);
    }

    #[test]
    fn a_message_split_over_reads_counts_once_when_complete() {
        let mut stream = startup(PROTOCOL_3, b"user\0x\0\0");
        // A 'Q' whose body holds an 'E' byte: only the tag counts.
        stream.extend(msg(b'Q', b"SELECT 'E'\0"));
        let mut f = Frontend::default();
        let mut counted = Vec::new();
        for chunk in stream.chunks(3) {
            counted.push(f.feed(chunk));
        }
        assert_eq!(counted.iter().sum::<u64>(), 1);
        assert_eq!(*counted.last().expect("chunks"), 1, "counted at the end");
    }

    #[test]
    fn the_start_up_packet_is_not_read_as_typed_messages() {
        // The start-up body is full of bytes that look like tags.
        let f_bytes = startup(PROTOCOL_3, b"QQQQEEEE\0\0");
        let mut f = Frontend::default();
        assert_eq!(f.feed(&f_bytes), 0);
    }

    #[test]
    fn transaction_rate_subtracts_the_readings_own_and_refuses_a_reset() {
        let t0 = std::time::Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(10);
        let a = XactSample {
            xacts: 1_000,
            at: t0,
        };
        let b = XactSample {
            xacts: 1_052,
            at: t1,
        };
        assert_eq!(xacts_per_second(a, b, 2), Some(5.0));
        let reset = XactSample { xacts: 3, at: t1 };
        assert_eq!(xacts_per_second(a, reset, 2), None);
        assert_eq!(xacts_per_second(b, a, 0), None, "time must move on");
    }
}
