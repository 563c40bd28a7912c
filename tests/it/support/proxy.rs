//! A TCP proxy on loopback that a test can cut and restore, to take a
//! PostgreSQL server away from daemons without stopping the server (which
//! other tests share).
//!
//! While cut, every open connection is closed and new ones are accepted and
//! dropped at once, as a server that went away or a network partition looks
//! to the client.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forward 127.0.0.1:<port 0> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, _) = watch::channel(true);
        let up_rx = Arc::new(up.subscribe());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut state = (*up_rx).clone();
                if !*state.borrow_and_update() {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            _task: task,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Close every connection and refuse new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self._task.abort();
    }
}

#[tokio::test]
async fn a_cut_closes_open_connections_and_a_restore_lets_new_ones_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let echo_addr = echo.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(echo_addr).await;
    let roundtrip = |mut s: TcpStream| async move {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.ok()?;
        Some((s, buf))
    };

    let conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    let (mut conn, buf) = roundtrip(conn).await.expect("echo through the proxy");
    assert_eq!(&buf, b"ping");

    proxy.cut();
    let mut buf = [0u8; 4];
    let _ = conn.write_all(b"ping").await;
    let n = conn.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "an open connection survived the cut");
    let fresh = TcpStream::connect(proxy.addr()).await.expect("accepted");
    assert!(
        roundtrip(fresh).await.is_none(),
        "a new connection got through while cut"
    );

    proxy.restore();
    let conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    let (_, buf) = roundtrip(conn).await.expect("echo after restore");
    assert_eq!(&buf, b"ping");
}
