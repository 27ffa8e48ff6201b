//! Running under systemd (or any service manager speaking its protocols): listening sockets
//! handed over by socket activation, and readiness, stopping and watchdog notifications.
//!
//! Nothing here does anything when the service manager's variables are absent, so the same
//! binary runs unchanged from a shell, a container or a unit file.
//!
//! The environment is read with the `sd-notify` crate. Notifications are sent on a socket of
//! our own, made non-blocking: the event loop sends `WATCHDOG=1` itself (so a stuck loop is
//! restarted), and a loop must not wait on a service manager that stopped reading.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::path::Path;
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrAny};

/// The `FileDescriptorName=` that marks a handed-over socket as the metrics endpoint's.
pub const METRICS_FD_NAME: &str = "metrics";

/// Listening sockets handed over by the service manager (`LISTEN_FDS`), sorted by use.
#[derive(Debug, Default)]
pub struct Activation {
    /// TCP listeners for the lock protocol.
    pub tcp: Vec<TcpListener>,
    /// Unix stream listeners for the lock protocol.
    pub unix: Vec<UnixListener>,
    /// The TCP listener named [`METRICS_FD_NAME`], for the monitoring endpoint.
    pub metrics: Option<TcpListener>,
}

impl Activation {
    /// The sockets passed to this process, or `None` when it was not socket-activated.
    ///
    /// # Errors
    ///
    /// If the variables are malformed or a descriptor is not a listening stream socket of a
    /// family the server serves.
    pub fn from_env() -> io::Result<Option<Activation>> {
        let fds: Vec<(i32, String)> = sd_notify::listen_fds_with_names()?.collect();
        if fds.is_empty() {
            return Ok(None);
        }
        let owned = fds.into_iter().map(|(fd, name)| {
            // SAFETY: the service manager passed these descriptors to this process, and
            // `listen_fds_with_names` reports each once (this is its only call): nothing
            // else in the process owns or closes them.
            (unsafe { OwnedFd::from_raw_fd(fd) }, name)
        });
        Activation::sort(owned).map(Some)
    }

    /// Sorts handed-over descriptors by family and name.
    fn sort(fds: impl IntoIterator<Item = (OwnedFd, String)>) -> io::Result<Activation> {
        let mut activation = Activation::default();
        for (fd, name) in fds {
            let invalid = |why: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("socket activation: descriptor {name:?} {why}"),
                )
            };
            if !rustix::net::sockopt::socket_acceptconn(&fd)? {
                return Err(invalid("is not a listening socket"));
            }
            let family = SocketAddrAny::address_family(&rustix::net::getsockname(&fd)?);
            match family {
                AddressFamily::INET | AddressFamily::INET6 => {
                    let listener = TcpListener::from(fd);
                    if name == METRICS_FD_NAME {
                        if activation.metrics.replace(listener).is_some() {
                            return Err(invalid("names a second metrics socket"));
                        }
                    } else {
                        activation.tcp.push(listener);
                    }
                }
                AddressFamily::UNIX => activation.unix.push(UnixListener::from(fd)),
                _ => return Err(invalid("is neither TCP nor a Unix socket")),
            }
        }
        Ok(activation)
    }
}

/// A state change to tell the service manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Listening and serving (`READY=1`).
    Ready,
    /// Draining for shutdown (`STOPPING=1`).
    Stopping,
    /// The loop is alive (`WATCHDOG=1`).
    Watchdog,
}

impl Notice {
    fn message(self) -> &'static [u8] {
        match self {
            Notice::Ready => b"READY=1\n",
            Notice::Stopping => b"STOPPING=1\n",
            Notice::Watchdog => b"WATCHDOG=1\n",
        }
    }
}

/// Sends [`Notice`]s to the service manager without ever blocking.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    /// How often to send [`Notice::Watchdog`]: half the service manager's timeout, if it set one.
    pub watchdog_interval: Option<Duration>,
}

impl Notifier {
    /// A notifier for the socket in `NOTIFY_SOCKET`, or `None` when the variable is absent.
    ///
    /// # Errors
    ///
    /// If the socket cannot be reached.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let mut notifier = Notifier::connect(Path::new(&path))?;
        notifier.watchdog_interval = sd_notify::watchdog_enabled().map(|timeout| timeout / 2);
        Ok(Some(notifier))
    }

    /// A notifier for the datagram socket at `path`; a leading `@` names an abstract socket.
    ///
    /// # Errors
    ///
    /// If the socket cannot be reached.
    pub fn connect(path: &Path) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        match path.to_str().and_then(|p| p.strip_prefix('@')) {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                socket.connect_addr(&SocketAddr::from_abstract_name(name)?)?;
            }
            None => socket.connect(path)?,
        }
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            watchdog_interval: None,
        })
    }

    /// Sends `notice`. A full queue drops it rather than wait: the next watchdog notice comes
    /// half a timeout later, and a manager that reads nothing for that long restarts us anyway.
    ///
    /// # Errors
    ///
    /// If the send fails for another reason than a full queue.
    pub fn notify(&self, notice: Notice) -> io::Result<()> {
        match self.socket.send(notice.message()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dflockd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn notices_reach_the_managers_socket() {
        let dir = temp_dir("notify");
        let path = dir.join("notify.sock");
        let manager = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::connect(&path).expect("connect");
        let mut buf = [0; 64];
        for (notice, text) in [
            (Notice::Ready, "READY=1\n"),
            (Notice::Watchdog, "WATCHDOG=1\n"),
            (Notice::Stopping, "STOPPING=1\n"),
        ] {
            notifier.notify(notice).expect("send");
            let n = manager.recv(&mut buf).expect("recv");
            assert_eq!(std::str::from_utf8(&buf[..n]), Ok(text));
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_manager_that_stops_reading_never_blocks_the_sender() {
        let name = format!("dflockd-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt as _;
        let addr = SocketAddr::from_abstract_name(&name).expect("name");
        let _manager = UnixDatagram::bind_addr(&addr).expect("bind");
        let notifier = Notifier::connect(Path::new(&format!("@{name}"))).expect("connect");
        // Far more than a datagram queue holds: each send either queues or is dropped.
        for _ in 0..10_000 {
            notifier.notify(Notice::Watchdog).expect("never an error");
        }
    }

    #[test]
    fn handed_over_sockets_are_sorted_by_family_and_name() {
        let dir = temp_dir("activation");
        let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
        let metrics = TcpListener::bind("127.0.0.1:0").expect("metrics");
        let unix = UnixListener::bind(dir.join("s.sock")).expect("unix");
        let (tcp_addr, metrics_addr) = (tcp.local_addr().ok(), metrics.local_addr().ok());
        let activation = Activation::sort([
            (OwnedFd::from(unix), "dflockd.socket".to_owned()),
            (OwnedFd::from(metrics), METRICS_FD_NAME.to_owned()),
            (OwnedFd::from(tcp), "unknown".to_owned()),
        ])
        .expect("sorted");
        assert_eq!(activation.tcp.len(), 1);
        assert_eq!(activation.tcp[0].local_addr().ok(), tcp_addr);
        assert_eq!(activation.unix.len(), 1);
        assert_eq!(
            activation.metrics.and_then(|m| m.local_addr().ok()),
            metrics_addr
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sockets_that_do_not_listen_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("tcp");
        let stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let err = Activation::sort([(OwnedFd::from(stream), "x".to_owned())])
            .expect_err("a connected socket is no listener");
        assert!(err.to_string().contains("not a listening socket"), "{err}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(Activation::sort([(OwnedFd::from(udp), "x".to_owned())]).is_err());
    }
}
