//! The listening sockets: TCP listeners and Unix stream listeners, each registered under a token
//! of its own, served by the same loop with the same limits.
//!
//! Edge-triggered epoll reports a listener once per transition, so each listener remembers
//! whether it may still have connections waiting (`pending`) until an accept says `WouldBlock`.
//! Accepting takes turns between the pending listeners, so a flood on one cannot starve the
//! other. The back-off after resource errors stays in `accept.rs`: EMFILE
//! hits every listener alike.
//!
//! A Unix socket file this process bound is removed when its listener closes (at the start of
//! the drain, or when the server is dropped), unless another server has replaced the file
//! meanwhile; a socket handed over by the service manager is left alone, it owns the file.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use log::debug;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::conn_id::{listener_of, listener_token};
use super::peer::Peer;

/// One listening socket.
#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A listener and its bookkeeping.
#[derive(Debug)]
struct Entry {
    socket: Socket,
    /// How the listening line and logs name it: `127.0.0.1:6388` or `unix:/run/d.sock`.
    name: String,
    /// May have connections waiting (see the module documentation).
    pending: bool,
    /// The socket file to remove when this listener closes, if this process created it (held
    /// for its `Drop`).
    _file: Option<SocketFile>,
}

/// A newly accepted connection's socket.
#[derive(Debug)]
pub enum Accepted {
    /// Over TCP.
    Tcp(TcpStream, SocketAddr),
    /// Over a Unix socket, with the peer's credentials (`None` if the kernel would not say).
    Unix(UnixStream, Option<Peer>),
}

/// Every listening socket of the server.
#[derive(Debug, Default)]
pub struct Listeners {
    entries: Vec<Entry>,
    /// Where the next accept starts looking, so pending listeners take turns.
    next: usize,
}

impl Listeners {
    /// Adds a bound TCP listener.
    pub fn add_tcp(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let name = listener.local_addr()?.to_string();
        self.entries.push(Entry {
            socket: Socket::Tcp(TcpListener::from_std(listener)),
            name,
            pending: false,
            _file: None,
        });
        Ok(())
    }

    /// Adds a bound Unix listener; `file` (from [`bind_unix`]) is removed when it closes.
    pub fn add_unix(
        &mut self,
        listener: std::os::unix::net::UnixListener,
        file: Option<SocketFile>,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let path = listener.local_addr()?.as_pathname().map(Path::to_path_buf);
        let name = match path {
            Some(path) => format!("unix:{}", path.display()),
            None => "unix:(unnamed)".to_owned(),
        };
        self.entries.push(Entry {
            socket: Socket::Unix(UnixListener::from_std(listener)),
            name,
            pending: false,
            _file: file,
        });
        Ok(())
    }

    /// Whether there is no listener.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listeners' names (`ADDR` or `unix:PATH`), in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.name.as_str())
    }

    /// The address of the first TCP listener, if there is one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.entries.iter().find_map(|entry| match &entry.socket {
            Socket::Tcp(listener) => listener.local_addr().ok(),
            Socket::Unix(_) => None,
        })
    }

    /// Registers every listener for readable events under its own token.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        for (index, entry) in self.entries.iter_mut().enumerate() {
            let token = listener_token(index);
            match &mut entry.socket {
                Socket::Tcp(listener) => registry.register(listener, token, Interest::READABLE)?,
                Socket::Unix(listener) => {
                    registry.register(listener, token, Interest::READABLE)?;
                }
            }
        }
        Ok(())
    }

    /// Takes a readiness event; `false` if `token` names no listener.
    pub fn on_event(&mut self, token: Token) -> bool {
        match listener_of(token).and_then(|index| self.entries.get_mut(index)) {
            Some(entry) => {
                entry.pending = true;
                true
            }
            None => false,
        }
    }

    /// Whether some listener may have connections waiting.
    pub fn any_pending(&self) -> bool {
        self.entries.iter().any(|entry| entry.pending)
    }

    /// Accepts one connection from the next pending listener. `None` once no listener has one
    /// waiting; an error other than `WouldBlock` is the caller's (back off, or go on).
    pub fn accept(&mut self) -> Option<io::Result<Accepted>> {
        let count = self.entries.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let entry = &mut self.entries[index];
            if !entry.pending {
                continue;
            }
            let result = match &entry.socket {
                Socket::Tcp(listener) => listener
                    .accept()
                    .map(|(stream, addr)| Accepted::Tcp(stream, addr)),
                Socket::Unix(listener) => listener.accept().map(|(stream, _)| {
                    let peer = peer_credentials(&stream);
                    Accepted::Unix(stream, peer)
                }),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => entry.pending = false,
                result => {
                    self.next = (index + 1) % count;
                    return Some(result);
                }
            }
        }
        None
    }

    /// Deregisters and closes every listener, removing the socket files this process created.
    pub fn close(&mut self, registry: &Registry) {
        for mut entry in self.entries.drain(..) {
            let _ = match &mut entry.socket {
                Socket::Tcp(listener) => registry.deregister(listener),
                Socket::Unix(listener) => registry.deregister(listener),
            };
        }
    }
}

/// The credentials of a Unix-socket peer: one `getsockopt(SO_PEERCRED)`, which never blocks.
fn peer_credentials(stream: impl AsFd) -> Option<Peer> {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) => Some(Peer::Unix {
            uid: cred.uid.as_raw(),
            gid: cred.gid.as_raw(),
            pid: cred.pid.as_raw_nonzero().get(),
        }),
        Err(e) => {
            debug!("cannot read a Unix peer's credentials: {e}");
            None
        }
    }
}

/// A socket file this process created, removed on drop if it is still the same file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device, inode and change time of the file as bound, so a file another server put there
    /// since is kept (an inode number alone is reused at once on tmpfs).
    id: FileId,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if FileId::of(&meta) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    debug!("cannot remove {}: {e}", self.path.display());
                }
            }
            _ => debug!("{} was replaced; left in place", self.path.display()),
        }
    }
}

/// Identifies one file over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Binds a Unix stream listener at `path` and gives the file `mode`.
///
/// A socket file already at `path` is probed first: if a server answers there, binding is
/// refused (never take over a running server's socket); if nobody listens (the connect is
/// refused: a server that died without cleaning up), the stale file is replaced. Any other kind
/// of file at `path` is an error.
///
/// # Errors
///
/// A message naming the path and what is wrong, for a configuration error.
pub fn bind_unix(
    path: &Path,
    mode: u32,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match probe(path) {
            Probe::Live => {
                return Err(format!(
                    "--unix-socket {shown}: a server is already listening on this socket; \
                     stop it or choose another path"
                ));
            }
            Probe::Stale => {
                std::fs::remove_file(path).map_err(|e| {
                    format!("--unix-socket {shown}: cannot replace a stale socket: {e}")
                })?;
            }
            Probe::Failed(e) => {
                return Err(format!(
                    "--unix-socket {shown}: cannot probe the existing socket: {e}"
                ));
            }
        },
        Ok(_) => {
            return Err(format!(
                "--unix-socket {shown}: the path exists and is not a socket; refusing to replace it"
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--unix-socket {shown}: {e}")),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on unix:{shown}: {e}"))?;
    // Until this chmod the file has the umask's bits; clients cannot connect before the loop
    // accepts anyway, and a tighter umask only delays access.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("--unix-socket-mode {mode:04o}: cannot set on {shown}: {e}"))?;
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| format!("--unix-socket {shown}: {e}"))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        id: FileId::of(&meta),
    };
    Ok((listener, file))
}

/// What connecting to an existing socket file said.
enum Probe {
    /// A listener is there (the connect succeeded or waits in its backlog).
    Live,
    /// Nobody listens: the file is left over.
    Stale,
    /// Something else went wrong (permissions, ...).
    Failed(io::Error),
}

/// Connects to the socket at `path` without blocking (a live server with a full backlog would
/// make a blocking connect wait).
fn probe(path: &Path) -> Probe {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let attempt = || -> rustix::io::Result<()> {
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&socket, &SocketAddrUnix::new(path)?)
    };
    match attempt() {
        Ok(()) => Probe::Live,
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INPROGRESS => {
            Probe::Live
        }
        Err(e) if e == rustix::io::Errno::CONNREFUSED || e == rustix::io::Errno::NOENT => {
            Probe::Stale
        }
        Err(e) => Probe::Failed(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dflockd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn stale_sockets_are_replaced_live_ones_and_other_files_refused() {
        let dir = temp_dir("bind-unix");
        let path = dir.join("s.sock");
        // A stale socket: bound, then its listener closed without removing the file.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let (live, file) = bind_unix(&path, 0o600).expect("stale file replaced");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = bind_unix(&path, 0o600).expect_err("a live server's socket");
        assert!(err.contains("already listening"), "{err}");
        drop(live);
        drop(file);
        assert!(!path.exists(), "the file is removed with its listener");

        std::fs::write(&path, b"data").expect("plain file");
        let err = bind_unix(&path, 0o600).expect_err("not a socket");
        assert!(err.contains("not a socket"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_replaced_socket_file_is_left_to_its_new_owner() {
        let dir = temp_dir("replaced-unix");
        let path = dir.join("s.sock");
        let (old, file) = bind_unix(&path, 0o600).expect("bind");
        drop(old);
        std::fs::remove_file(&path).expect("remove");
        let (_new, _new_file) = bind_unix(&path, 0o600).expect("bind again");
        drop(file);
        assert!(path.exists(), "the new server's socket stays");
        let _ = std::fs::remove_dir_all(dir);
    }
}
