//! Test support: start the real `dflockd` binary on a free port and talk to it line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for a line the server should send.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A `dflockd` process listening on 127.0.0.1 on a port the OS picked.
pub struct TestServer {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts the server with extra command-line arguments.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start_with_env(args, &[])
    }

    /// Starts the server with extra arguments and environment variables (the test process's own
    /// `DFLOCKD_*` variables are not passed on).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(args, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// Starts the server with extra arguments after `configure` adjusted the command (its
    /// environment, or limits applied in the child before it executes the binary). The test
    /// process's own `DFLOCKD_*` variables are removed before `configure` runs.
    pub fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> TestServer {
        let mut command = dflockd_command(args);
        configure(&mut command);
        let mut child = command.spawn().expect("spawn dflockd");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    // With --no-tcp the first listener is `unix:PATH`: the test knows the path,
                    // and the address stays unspecified.
                    let _ = match addr.strip_prefix("unix:") {
                        Some(_) => addr_tx.send(Some(SocketAddr::from(([0, 0, 0, 0], 0)))),
                        None => addr_tx.send(addr.parse::<SocketAddr>().ok()),
                    };
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!(
                    "dflockd did not report its address; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        TestServer {
            child: Some(child),
            addr,
            log,
        }
    }

    /// Starts the server with its stderr on a pipe that nobody reads after the start-up line:
    /// once the pipe's buffer is full, every write the server makes to it would block. Returns
    /// the pipe so the test can drain it later (the log of this server stays empty).
    pub fn start_with_stalled_log(args: &[&str]) -> (TestServer, BufReader<ChildStderr>) {
        let mut child = dflockd_command(args).spawn().expect("spawn dflockd");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("dflockd did not report its address");
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break addr
                    .parse::<SocketAddr>()
                    .expect("address in the start-up line");
            }
        };
        let server = TestServer {
            child: Some(child),
            addr,
            log: Arc::default(),
        };
        (server, stderr)
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle` (panics after `timeout`).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().iter().any(|line| line.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "no log line contains {needle:?}; log:\n{}",
            self.log().join("\n")
        );
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Sends SIGHUP (reload the TLS certificate and the auth token file).
    pub fn hangup(&self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill(SIGHUP) failed");
    }

    /// Sends SIGINT (graceful shutdown, like SIGTERM).
    pub fn interrupt(&self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped; no memory is involved.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(SIGINT) failed");
    }

    /// Waits for the process to exit (panics after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "dflockd did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw protocol client with read timeouts, so a missing reply fails the test instead of
/// hanging it.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// Sends one request without waiting for the reply.
    pub fn send(&mut self, cmd: &str, key: &str, arg: &str) {
        self.send_raw(format!("{cmd}\n{key}\n{arg}\n").as_bytes());
    }

    /// Sends one request and returns the reply line (without its LF).
    pub fn request(&mut self, cmd: &str, key: &str, arg: &str) -> String {
        self.send(cmd, key, arg);
        self.read_line()
    }

    /// Reads one line (without its LF); panics on timeout or EOF.
    pub fn read_line(&mut self) -> String {
        self.try_read_line()
            .unwrap_or_else(|| panic!("connection closed while a line was expected"))
    }

    /// Reads one line, or `None` at EOF; panics on timeout.
    pub fn try_read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert_eq!(line.pop(), Some(b'\n'), "line cut short: {line:?}");
                Some(String::from_utf8(line).expect("utf-8 reply"))
            }
            Err(e) => panic!("no reply within {REPLY_TIMEOUT:?}: {e}"),
        }
    }

    /// Asserts that the server closes the connection without sending anything more.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes before close: {rest:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed within {REPLY_TIMEOUT:?}: {e}"),
        }
    }

    /// Asserts that nothing arrives within `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(quiet)).unwrap();
        let mut byte = [0u8; 1];
        let buffered = self.reader.buffer().to_vec();
        assert!(
            buffered.is_empty(),
            "unexpected buffered bytes: {buffered:?}"
        );
        match self.reader.get_mut().read(&mut byte) {
            Ok(0) => panic!("connection closed while silence was expected"),
            Ok(_) => panic!("unexpected byte {:?}", byte[0] as char),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "read failed: {e}"
            ),
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .unwrap();
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&self) {
        self.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    }

    /// Closes the connection abortively: the peer gets a reset (RST) instead of a FIN, as when a
    /// client process crashes or a middlebox kills the connection.
    pub fn reset(self) {
        reset(self.reader.into_inner());
    }
}

/// Closes `stream` with a reset (RST) instead of a FIN: `SO_LINGER` with a zero timeout makes
/// `close(2)` discard unsent data and abort the connection.
pub fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;

    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt(2) on a descriptor `stream` owns, reading a `linger` that lives on the
    // stack for the duration of the call; the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(stream);
}

/// Splits an `ok <token> <lease>` grant into its token and lease; panics on anything else.
pub fn grant(line: &str) -> (String, u64) {
    let fields: Vec<&str> = line.split(' ').collect();
    assert!(
        fields.len() == 3 && (fields[0] == "ok" || fields[0] == "acquired"),
        "not a grant: {line:?}"
    );
    assert_eq!(fields[1].len(), 32, "token length in {line:?}");
    (fields[1].to_string(), fields[2].parse().expect("lease"))
}

impl TestServer {
    /// The monitoring endpoint's address, read from the `metrics on http://ADDR/metrics` line
    /// the server logs before `listening on` (so it is in the log once [`TestServer::start`]
    /// returns). Panics if the server was started without `--metrics-addr`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.log()
            .iter()
            .find_map(|line| {
                let rest = line.split("metrics on http://").nth(1)?;
                rest.split('/').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", self.log().join("\n")))
    }

    /// A new connection whose local (source) address is `local` instead of the one the OS
    /// picks, so tests can appear to come from several loopback addresses (127.0.0.0/8).
    pub fn connect_from(&self, local: std::net::Ipv4Addr) -> Client {
        Client::from_stream(connect_from(local, self.addr).expect("connect from a chosen address"))
    }

    /// Opens a connection, asks for `stats` and closes it again: the server's state as JSON.
    /// (The connection counts in `connections`.)
    pub fn stats(&self) -> serde_json::Value {
        self.connect().stats()
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("not reaped yet");
        child.try_wait().expect("try_wait").is_some()
    }

    /// The server's resident set size in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

impl Client {
    /// Wraps an already connected socket, with the same timeouts as [`Client::connect`].
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Sends raw bytes and returns the reply line.
    pub fn request_raw(&mut self, bytes: &[u8]) -> String {
        self.send_raw(bytes);
        self.read_line()
    }

    /// `stats`, parsed.
    pub fn stats(&mut self) -> serde_json::Value {
        let line = self.request("stats", "_", "_");
        let json = line
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("not a stats reply: {line:?}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("stats is not JSON ({e}): {json}"))
    }

    /// `l <key> <arg>` that must be granted; returns the token.
    pub fn lock(&mut self, key: &str, arg: &str) -> String {
        grant(&self.request("l", key, arg)).0
    }
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `timeout`. For state
/// the server reaches on its own (a disconnect noticed, an entry collected), where there is no
/// reply to wait for.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The entry for `key` in the `stats` array `array` (`locks`, `semaphores`, ...), if any.
pub fn stats_entry<'a>(
    stats: &'a serde_json::Value,
    array: &str,
    key: &str,
) -> Option<&'a serde_json::Value> {
    stats[array]
        .as_array()
        .unwrap_or_else(|| panic!("stats.{array} is not an array: {stats}"))
        .iter()
        .find(|entry| entry["key"] == key)
}

/// Waiters queued on lock `key` according to `stats` (0 if the lock is not listed).
pub fn lock_waiters(server: &TestServer, key: &str) -> u64 {
    let stats = server.stats();
    stats_entry(&stats, "locks", key).map_or(0, |entry| {
        entry["waiters"].as_u64().expect("waiters is an integer")
    })
}

/// Runs the binary to completion with `args` and `env` (the test process's own `DFLOCKD_*`
/// variables removed), for options that exit at once (`--help`, configuration errors).
pub fn run_dflockd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dflockd"));
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("DFLOCKD_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run dflockd")
}

/// `connect(2)` from a chosen local IPv4 address: std cannot bind a socket before connecting.
fn connect_from(local: std::net::Ipv4Addr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;

    let SocketAddr::V4(remote) = remote else {
        panic!("connect_from supports IPv4 servers only");
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket system calls on a descriptor this function owns; the address
    // structs live on the stack for the duration of each call and `len` is their size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Owning the descriptor at once closes it on every error path below.
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(local, 0);
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(*remote.ip(), remote.port());
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Runs the binary with `args` and `env` on an ephemeral loopback port, expecting it to refuse
/// to start: asserts exit status 1 and returns what it wrote to stderr. A server that starts
/// anyway is killed after a few seconds (instead of hanging the test) and fails it.
pub fn start_up_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = dflockd_command(args);
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("spawn dflockd");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dflockd {args:?} {env:?} started instead of refusing to");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{args:?} {env:?}: {stderr}");
    stderr
}

/// A fresh directory under the system temporary directory, removed again on drop: for files a
/// test hands the server (token files, certificates).
pub struct TempDir {
    path: std::path::PathBuf,
}

impl TempDir {
    /// Creates a directory whose name is unique to this process and call.
    pub fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("dflockd-it-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    /// Writes `contents` to the file `name` in this directory; returns its path as text (the
    /// form command lines and environment variables take).
    pub fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path.to_str()
            .expect("temporary paths are UTF-8")
            .to_string()
    }

    /// The path `name` in this directory, without creating anything there.
    pub fn path(&self, name: &str) -> String {
        let path = self.path.join(name);
        path.to_str()
            .expect("temporary paths are UTF-8")
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The `dflockd` binary on an ephemeral loopback port with `args`, stderr piped, and without the
/// test process's own `DFLOCKD_*` variables.
fn dflockd_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dflockd"));
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("DFLOCKD_") {
            command.env_remove(name);
        }
    }
    command
}
