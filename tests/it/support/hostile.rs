//! A misbehaving HTTP server on 127.0.0.1 port 0: each request is handed to
//! the test's closure, which says what to answer, including answers no
//! real API gives (an endless body, a page that links to itself).
//!
//! One request per connection (`Connection: close`), so the server needs
//! no HTTP framing beyond the request head and a `Content-Length` body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub body: String,
}

/// What the server answers.
pub enum Answer {
    /// A status with a JSON body.
    Json(u16, String),
    /// A 200 with a chunked body that never ends: the server writes until
    /// the client hangs up.
    Endless,
    /// Never answer (the connection stays open until the client gives up).
    Hang,
}

/// A running server; stops when dropped.
pub struct Hostile {
    addr: SocketAddr,
    /// Body bytes written to clients so far.
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    pub async fn start<F>(answer: F) -> Hostile
    where
        F: Fn(&Request) -> Answer + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let answer = Arc::new(answer);
        let (sent2, requests2) = (sent.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, sent, requests) = (answer.clone(), sent2.clone(), requests2.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, answer.as_ref(), &sent, &requests).await;
                });
            }
        });
        Hostile {
            addr,
            sent,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` with no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn body_bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<F>(
    stream: tokio::net::TcpStream,
    answer: &F,
    sent: &AtomicU64,
    requests: &AtomicU64,
) -> std::io::Result<()>
where
    F: Fn(&Request) -> Answer,
{
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header == "\r\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    requests.fetch_add(1, Ordering::Relaxed);
    let req = Request {
        method,
        target,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut stream = reader.into_inner();
    match answer(&req) {
        Answer::Json(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        Answer::Hang => std::future::pending::<()>().await,
        Answer::Endless => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                )
                .await?;
            let chunk = vec![b' '; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            loop {
                stream.write_all(&framed).await?;
                sent.fetch_add(64 * 1024, Ordering::Relaxed);
            }
        }
    }
    stream.shutdown().await
}
