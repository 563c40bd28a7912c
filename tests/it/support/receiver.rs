//! A webhook receiver on 127.0.0.1 port 0 for the notification tests: it
//! records every request it answers and can be switched between accepting
//! (200), refusing with 503, and not answering at all (each connection is
//! closed as soon as it is accepted, as if nothing listened).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};

/// How the receiver treats the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    Unavailable,
    /// Close every new connection at once.
    Down,
}

/// One request the receiver read.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    /// What it answered.
    pub status: u16,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }
}

#[derive(Default)]
struct Inner {
    mode: Option<Mode>,
    requests: Vec<Request>,
    refused_connections: usize,
}

/// The running receiver; stops when dropped with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

struct Switchable {
    listener: TcpListener,
    inner: Arc<Mutex<Inner>>,
}

impl axum::serve::Listener for Switchable {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((stream, addr)) = self.listener.accept().await else {
                continue;
            };
            let mut inner = self.inner.lock().expect("receiver lock");
            if inner.mode == Some(Mode::Down) {
                inner.refused_connections += 1;
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

async fn hook(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut inner = inner.lock().expect("receiver lock");
    let status = match inner.mode.unwrap_or(Mode::Accept) {
        Mode::Accept => StatusCode::OK,
        Mode::Unavailable | Mode::Down => StatusCode::SERVICE_UNAVAILABLE,
    };
    inner.requests.push(Request {
        path: uri.path().to_owned(),
        headers,
        body,
        status: status.as_u16(),
    });
    status
}

impl Receiver {
    /// Start on 127.0.0.1, port 0, in `mode`.
    pub async fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner {
            mode: Some(mode),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{*path}", post(hook))
            .with_state(inner.clone());
        let listener = Switchable {
            listener,
            inner: inner.clone(),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, addr }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().expect("receiver lock").mode = Some(mode);
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().expect("receiver lock").requests.clone()
    }

    /// The requests answered 200, in order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Connections closed unanswered while [`Mode::Down`].
    pub fn refused_connections(&self) -> usize {
        self.inner
            .lock()
            .expect("receiver lock")
            .refused_connections
    }

    /// Poll `cond` on the receiver every 20 ms until it holds; fail after
    /// `within` with what was received.
    pub fn wait_for(&self, what: &str, within: Duration, cond: impl Fn(&Receiver) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "the receiver did not see {what} within {within:?}; requests: {:#?}",
                self.requests()
                    .iter()
                    .map(|r| (r.status, r.body.clone()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
