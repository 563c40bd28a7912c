//! The systemd notification protocol (`sd_notify`) for `Type=notify` units.
//!
//! `READY=1` is sent once the daemon's ready hook fires (store open, config
//! valid, scheduler started); `STATUS=` follows the scheduler's summary line
//! and is re-sent only when the line changes; `WATCHDOG=1` is sent from the
//! scheduler loop's own tick, so a hung loop stops the pings and systemd
//! restarts the service; `RELOADING=1` ... `READY=1` brackets a SIGHUP reload;
//! `STOPPING=1` marks the start of shutdown.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. Send failures are logged at
//! debug level and otherwise ignored: a missing service manager must never
//! stop the scheduler.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::{Hooks, Status};

fn send(states: &[NotifyState<'_>]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    if let Err(e) = send_nonblocking(&socket, msg.as_bytes()) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Send one datagram without ever waiting: these calls come from the
/// scheduler loop, and a manager that stopped reading (its queue full) must
/// cost a dropped message, not a stalled loop.
fn send_nonblocking(socket: &std::ffi::OsStr, msg: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;

    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let sent = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr)?
        }
        None => sock.send_to(msg, std::path::Path::new(socket))?,
    };
    if sent == msg.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete notify datagram",
        ))
    }
}

/// Pings the watchdog at most every quarter of its interval, so a loop that
/// ticks every second does not flood the socket, yet a single late tick does
/// not trip it.
struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    fn due(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[derive(Default)]
struct TickState {
    last_status: Option<String>,
    watchdog: Option<Watchdog>,
}

/// Hooks that speak the sd_notify protocol. The watchdog interval is read from
/// `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set, must be this process).
pub fn hooks() -> Hooks {
    let watchdog = sd_notify::watchdog_enabled().map(|interval| Watchdog {
        every: interval / 4,
        last: None,
    });
    let state = Arc::new(Mutex::new(TickState {
        last_status: None,
        watchdog,
    }));

    let tick_state = state.clone();
    let tick = Arc::new(move |status: &Status| {
        let line = status.line();
        let Ok(mut st) = tick_state.lock() else {
            return;
        };
        let ping = st.watchdog.as_mut().is_some_and(|w| w.due(Instant::now()));
        let changed = st.last_status.as_deref() != Some(line.as_str());
        let mut states = Vec::with_capacity(2);
        if changed {
            states.push(NotifyState::Status(&line));
        }
        if ping {
            states.push(NotifyState::Watchdog);
        }
        if !states.is_empty() {
            send(&states);
        }
        if changed {
            st.last_status = Some(line.clone());
        }
    });

    let ready = Arc::new(|| send(&[NotifyState::Ready]));

    let reloading = Arc::new(|starting: bool| {
        if starting {
            // systemd >= 253 requires MONOTONIC_USEC with RELOADING=1 for
            // Type=notify-reload; older managers ignore it.
            match NotifyState::monotonic_usec_now() {
                Ok(now) => send(&[NotifyState::Reloading, now]),
                Err(_) => send(&[NotifyState::Reloading]),
            }
        } else {
            send(&[NotifyState::Ready]);
        }
    });

    let stopping = Arc::new(|| send(&[NotifyState::Stopping]));

    Hooks {
        ready: Some(ready),
        tick: Some(tick),
        reloading: Some(reloading),
        stopping: Some(stopping),
        ..Hooks::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_once_per_period() {
        let mut w = Watchdog {
            every: Duration::from_secs(10),
            last: None,
        };
        let t0 = Instant::now();
        assert!(w.due(t0));
        assert!(!w.due(t0 + Duration::from_secs(9)));
        assert!(w.due(t0 + Duration::from_secs(10)));
        assert!(!w.due(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn a_manager_that_stops_reading_costs_messages_not_a_stalled_sender() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        // Bound and never read: its queue fills after a few hundred datagrams.
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        let socket = path.clone().into_os_string();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let results: Vec<bool> = (0..5_000)
                .map(|_| send_nonblocking(&socket, b"WATCHDOG=1\n").is_ok())
                .collect();
            let _ = done.send(results);
        });
        let results = finished
            .recv_timeout(Duration::from_secs(30))
            .expect("a send blocked on a full notify queue");
        assert!(results[0], "the first datagram was not delivered");
        assert!(
            results.iter().any(|ok| !ok),
            "5,000 datagrams fit an unread queue; the test did not fill it"
        );
        // Once the manager reads again, messages get through.
        let mut buf = [0u8; 64];
        receiver.set_nonblocking(true).expect("nonblocking");
        while receiver.recv(&mut buf).is_ok() {}
        assert!(send_nonblocking(&path.into_os_string(), b"READY=1\n").is_ok());
        let n = receiver.recv(&mut buf).expect("delivered after draining");
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
