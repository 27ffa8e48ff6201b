//! SIGHUP: the TLS certificate and key and the auth and admin token files are read again, on a
//! thread of their own (a file read must not block the loop), and the loop takes the result when
//! it is ready. New TLS handshakes use the new certificate and new `auth` requests the new
//! tokens; connections (admins included), locks, waiters and subscriptions are not touched. A
//! file that cannot be read or does not parse keeps the old setting, and the log says why. No
//! other setting reloads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;

use mio::Waker;

use crate::config::{Secret, TlsFiles, admin_token_from_file, auth_token_from_file};

use super::transport::tls::load_server_config;

/// The files SIGHUP reads again.
#[derive(Clone, Debug, Default)]
pub struct ReloadSources {
    /// The TLS certificate and key, when TLS is on.
    pub tls: Option<TlsFiles>,
    /// The auth token file, when the token came from one.
    pub auth_token_file: Option<PathBuf>,
    /// The admin token file, when the admin token came from one.
    pub admin_token_file: Option<PathBuf>,
}

impl ReloadSources {
    /// Whether there is anything to read again.
    pub fn is_empty(&self) -> bool {
        self.tls.is_none() && self.auth_token_file.is_none() && self.admin_token_file.is_none()
    }
}

/// What a reload read: each part `None` when it has no file, else the new value or why not.
#[derive(Debug)]
pub struct Reloaded {
    /// The new TLS configuration.
    pub tls: Option<Result<Arc<rustls::ServerConfig>, String>>,
    /// The new auth token.
    pub auth_token: Option<Result<Secret, String>>,
    /// The new admin token.
    pub admin_token: Option<Result<Secret, String>>,
}

/// Runs reloads one at a time; a SIGHUP during a reload starts another after it.
#[derive(Debug)]
pub struct Reloader {
    sources: ReloadSources,
    running: Option<Receiver<Reloaded>>,
    again: bool,
}

impl Reloader {
    /// A reloader of `sources`.
    pub fn new(sources: ReloadSources) -> Reloader {
        Reloader {
            sources,
            running: None,
            again: false,
        }
    }

    /// Starts a reload, which wakes the loop through `waker` when done.
    pub fn request(&mut self, waker: &Arc<Waker>) {
        if self.running.is_some() {
            self.again = true;
            return;
        }
        let (done, result) = mpsc::sync_channel(1);
        let sources = self.sources.clone();
        let waker = Arc::clone(waker);
        let started = thread::Builder::new().name("reload".into()).spawn(move || {
            let _ = done.send(read(&sources));
            let _ = waker.wake();
        });
        match started {
            Ok(_) => self.running = Some(result),
            Err(e) => log::warn!("reload: cannot start the reading thread: {e}"),
        }
    }

    /// The finished reload, if one finished since the last call; starts the next one a SIGHUP
    /// asked for meanwhile.
    pub fn poll(&mut self, waker: &Arc<Waker>) -> Option<Reloaded> {
        let result = match self.running.as_ref()?.try_recv() {
            Ok(reloaded) => Some(reloaded),
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => None,
        };
        self.running = None;
        if std::mem::take(&mut self.again) {
            self.request(waker);
        }
        result
    }
}

/// Reads every file of `sources`.
fn read(sources: &ReloadSources) -> Reloaded {
    Reloaded {
        tls: sources
            .tls
            .as_ref()
            .map(|files| load_server_config(&files.cert, &files.key)),
        auth_token: read_secret(sources.auth_token_file.as_ref(), auth_token_from_file),
        admin_token: read_secret(sources.admin_token_file.as_ref(), admin_token_from_file),
    }
}

/// The secret in the file at `path`, if there is one, read and checked by `read`.
fn read_secret(
    path: Option<&PathBuf>,
    read: fn(&str) -> Result<Secret, String>,
) -> Option<Result<Secret, String>> {
    path.map(|path| {
        path.to_str()
            .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))
            .and_then(read)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_again_and_a_bad_one_is_reported() {
        let dir = std::env::temp_dir().join(format!("dflockd-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("token");
        std::fs::write(&path, "first\n").expect("write");
        let sources = ReloadSources {
            tls: None,
            auth_token_file: Some(path.clone()),
            admin_token_file: Some(path.clone()),
        };
        let token = read(&sources)
            .auth_token
            .expect("a token file")
            .expect("valid");
        assert_eq!(token.expose(), "first");
        let admin = read(&sources).admin_token.expect("a token file");
        assert_eq!(admin.expect("valid").expose(), "first");
        std::fs::write(&path, "  \n").expect("write");
        assert!(read(&sources).auth_token.expect("a token file").is_err());
        let admin = read(&sources).admin_token.expect("a token file");
        assert!(admin.is_err_and(|why| why.contains("admin token")));
        std::fs::remove_file(&path).expect("remove");
        let missing = read(&sources).auth_token.expect("a token file");
        assert!(missing.is_err_and(|why| why.contains("cannot read")));
        assert!(read(&ReloadSources::default()).tls.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
