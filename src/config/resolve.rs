//! Resolution and validation: applies the precedence rule (explicit flag, then non-empty variable, then
//! default) to each setting, parses and checks every value, and reads the auth and admin token files.

use std::collections::HashMap;
use std::env::VarError;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::num::ParseIntError;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::ArgMatches;

use super::settings::*;
use super::{Config, ConfigError, LogFormat, MAX_SECONDS, Origin, Secret, TlsFiles};
use crate::protocol::{MAX_PAYLOAD_LINE, MAX_REQUEST};

/// An input buffer smaller than the longest legal request (spec §2.2) could not hold one.
pub(super) const MIN_INPUT_BUFFER: usize = MAX_REQUEST;

/// The longest single push line a subscriber can be sent is bounded by the 64 KiB signal payload; a hard
/// output limit below one such line would disconnect a subscriber for receiving a single legal signal.
pub(super) const MIN_OUTPUT_BUFFER: usize = MAX_PAYLOAD_LINE + 1;
/// The least `--max-total-output`: a few connections' worth.
pub(super) const MIN_TOTAL_OUTPUT: usize = 1 << 20;

/// A client can present at most a 65 536-byte arg line to `auth` (spec §2.2), so a longer token could never be
/// matched.
pub(super) const MAX_AUTH_TOKEN_BYTES: usize = MAX_PAYLOAD_LINE;

/// Official clients send `ping` on signal connections every 15 s (spec §12). A read timeout must exceed
/// that, with a second to spare for the ping's trip, or the server cuts idle subscribers off between
/// pings; shorter timeouts are allowed (the spec only requires > 0) but get a start-up warning.
pub(super) const MIN_SUBSCRIBER_SAFE_READ_TIMEOUT_S: u64 = 16;

/// A token file holds a token and perhaps some white space; bounding the read keeps a mistaken path such as
/// `/dev/zero` from exhausting memory at start-up.
pub(super) const MAX_AUTH_TOKEN_FILE_BYTES: u64 = 1 << 20;

/// Snapshots the variables this module reads; one that is not valid UTF-8 is an error rather than a
/// silently mangled value.
pub(super) fn process_env() -> Result<HashMap<&'static str, String>, ConfigError> {
    let names = server_variables();
    let mut vars = HashMap::new();
    for name in names {
        match std::env::var(name) {
            Ok(value) => {
                vars.insert(name, value);
            }
            Err(VarError::NotPresent) => {}
            Err(VarError::NotUnicode(_)) => {
                return Err(ConfigError::Invalid {
                    origin: Origin::Env(name),
                    problem: "value is not valid UTF-8".to_owned(),
                });
            }
        }
    }
    Ok(vars)
}

/// A setting's unparsed text and where it came from.
pub(super) struct Raw {
    pub(super) origin: Origin,
    pub(super) text: String,
}

/// A parsed value and where it came from, kept for settings checked against each other.
pub(super) struct Sourced<T> {
    pub(super) value: T,
    pub(super) origin: Origin,
}

/// One of the server's two secrets: the settings it comes from and the words its messages use.
pub(super) struct SecretKind {
    /// What it is called in messages.
    name: &'static str,
    /// What leaving it unset does, for the message that suggests it.
    unset: &'static str,
    /// The setting holding the secret itself.
    inline: &'static Setting,
    /// The setting holding the path of a file with the secret.
    file: &'static Setting,
}

/// The shared secret every connection must send first when it is set (spec §14).
pub(super) const AUTH: SecretKind = SecretKind {
    name: "auth token",
    unset: "run without authentication",
    inline: &AUTH_TOKEN,
    file: &AUTH_TOKEN_FILE,
};

/// The secret whose `auth` makes a connection an admin.
pub(super) const ADMIN: SecretKind = SecretKind {
    name: "admin token",
    unset: "run without an admin token",
    inline: &ADMIN_TOKEN,
    file: &ADMIN_TOKEN_FILE,
};

/// Where a secret is read from.
pub(super) enum TokenSource {
    /// The token itself.
    Inline(Raw),
    /// The path of a file holding it.
    File(Raw),
}

/// Applies the precedence rule to each setting, collecting warnings on the way.
pub(super) struct Resolver<'a> {
    pub(super) matches: ArgMatches,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) warnings: Vec<String>,
}

impl Resolver<'_> {
    /// Resolves every setting exactly once, so each deprecation warning appears once.
    pub(super) fn config(&mut self) -> Result<Config, ConfigError> {
        let (max_pending_output, max_output_buffer) = self.output_limits()?;
        let token_source = self.token_source(&AUTH);
        let admin_source = self.token_source(&ADMIN);
        let config = Config {
            host: self.get(&HOST, parse_host)?,
            port: self.get(&PORT, bounded(0, u16::MAX, "port number"))?,
            tcp: self.get(&TCP, parse_bool)?,
            unix_socket: self.optional(&UNIX_SOCKET, parse_path)?.map(|p| p.value),
            unix_socket_mode: self.get(&UNIX_SOCKET_MODE, parse_mode)?,
            unix_allow_uid: self
                .optional(&UNIX_ALLOW_UID, id_list("user id"))?
                .map_or_else(Vec::new, |list| list.value),
            unix_allow_gid: self
                .optional(&UNIX_ALLOW_GID, id_list("group id"))?
                .map_or_else(Vec::new, |list| list.value),
            unix_peer_auth: self.get(&UNIX_PEER_AUTH, parse_bool)?,
            default_lease_s: self.get(&DEFAULT_LEASE_TTL, seconds(1))?,
            lease_sweep_interval_s: self.get(&LEASE_SWEEP_INTERVAL, seconds(1))?,
            gc_interval_s: self.get(&GC_INTERVAL, seconds(1))?,
            gc_max_idle_s: self.get(&GC_MAX_IDLE, seconds(0))?,
            max_locks: self.get(&MAX_LOCKS, count(1))?,
            max_connections: self.get(&MAX_CONNECTIONS, count(0))?,
            max_connections_per_ip: self.get(&MAX_CONNECTIONS_PER_IP, count(0))?,
            max_waiters: self.get(&MAX_WAITERS, count(0))?,
            lock_delay_ms: self.get(&LOCK_DELAY, millis(0))?,
            lock_events: self.get(&LOCK_EVENTS, parse_bool)?,
            max_subscriptions: self.get(&MAX_SUBSCRIPTIONS, count(0))?,
            max_subscription_bytes: self.get(&MAX_SUBSCRIPTION_BYTES, count(0))?,
            max_total_subscriptions: self.get(&MAX_TOTAL_SUBSCRIPTIONS, count(0))?,
            read_timeout_s: self.get(&READ_TIMEOUT, seconds(1))?,
            write_timeout_s: self.get(&WRITE_TIMEOUT, seconds(0))?,
            shutdown_timeout_s: self.get(&SHUTDOWN_TIMEOUT, seconds(0))?,
            auto_release_on_disconnect: self.get(&AUTO_RELEASE_ON_DISCONNECT, parse_bool)?,
            tls: self.tls()?,
            tls_handshake_timeout_s: self.get(&TLS_HANDSHAKE_TIMEOUT, seconds(1))?,
            auth_token_file: file_of(&token_source),
            auth_token: Self::secret(&AUTH, token_source)?,
            admin_token_file: file_of(&admin_source),
            admin_token: Self::secret(&ADMIN, admin_source)?,
            debug: self.get(&DEBUG, parse_bool)?,
            log_format: self.get(&LOG_FORMAT, parse_log_format)?,
            metrics_addr: self
                .optional(&METRICS_ADDR, parse_host_port)?
                .map(|addr| addr.value),
            metrics_max_connections: self
                .get(&METRICS_MAX_CONNECTIONS, bounded(1, usize::MAX, "number"))?,
            log_connections: self.get(&LOG_CONNECTIONS, parse_bool)?,
            max_input_buffer: self.get(&MAX_INPUT_BUFFER, bytes(MIN_INPUT_BUFFER))?,
            max_pending_output,
            max_output_buffer,
            max_total_output: self.get(&MAX_TOTAL_OUTPUT, bytes(MIN_TOTAL_OUTPUT))?,
            accept_batch: self.get(&ACCEPT_BATCH, bounded(1, usize::MAX, "number"))?,
            cpu: self
                .optional(&CPU, bounded(0, u32::MAX, "CPU core index"))?
                .map(|cpu| cpu.value),
            busy_poll: self.get(&BUSY_POLL, parse_bool)?,
        };
        distinct_secrets(&config)?;
        Ok(config)
    }

    /// The value of a setting that has a default.
    pub(super) fn get<T>(
        &mut self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.required(setting, parse)?.value)
    }

    /// Like [`Resolver::get`], keeping the origin for cross-setting checks.
    pub(super) fn required<T>(
        &mut self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Sourced<T>, ConfigError> {
        let raw = self
            .raw(setting)
            .expect("settings read as required have a built-in default");
        parse_raw(raw, parse)
    }

    /// The value of a setting that may be unset.
    pub(super) fn optional<T>(
        &mut self,
        setting: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Sourced<T>>, ConfigError> {
        self.raw(setting)
            .map(|raw| parse_raw(raw, parse))
            .transpose()
    }

    /// Explicit flag, else non-empty variable, else default.
    pub(super) fn raw(&mut self, setting: &Setting) -> Option<Raw> {
        self.flag_value(setting)
            .or_else(|| self.env_value(setting))
            .or_else(|| {
                setting.default.map(|text| Raw {
                    origin: Origin::Default,
                    text: text.to_owned(),
                })
            })
    }

    /// The setting's text if it was given on the command line; `--no-x` reads as `false`.
    pub(super) fn flag_value(&self, setting: &Setting) -> Option<Raw> {
        // The flag and its negation override each other, so at most one of them is present.
        if let Some(negated) = setting
            .negated
            .filter(|negated| self.matches.get_flag(negated))
        {
            return Some(Raw {
                origin: Origin::Flag(negated),
                text: "false".to_owned(),
            });
        }
        let text = self.matches.get_one::<String>(setting.flag)?;
        Some(Raw {
            origin: Origin::Flag(setting.flag),
            text: text.clone(),
        })
    }

    /// The setting's non-empty variable, the canonical name first, then the deprecated one with a warning.
    pub(super) fn env_value(&mut self, setting: &Setting) -> Option<Raw> {
        if let Some(text) = self.lookup(setting.env) {
            return Some(Raw {
                origin: Origin::Env(setting.env),
                text,
            });
        }
        let alias = setting.deprecated_env?;
        let text = self.lookup(alias)?;
        self.warnings.push(format!(
            "{alias} is deprecated; use {} or --{} instead",
            setting.env, setting.flag
        ));
        Some(Raw {
            origin: Origin::Env(alias),
            text,
        })
    }

    /// A variable's value; an empty one counts as unset.
    pub(super) fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|value| !value.is_empty())
    }

    /// The TLS files, which must be configured together.
    pub(super) fn tls(&mut self) -> Result<Option<TlsFiles>, ConfigError> {
        let cert = self.optional(&TLS_CERT, parse_path)?;
        let key = self.optional(&TLS_KEY, parse_path)?;
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.value,
                key: key.value,
            })),
            (Some(cert), None) => Err(missing_partner(&cert.origin, &TLS_KEY)),
            (None, Some(key)) => Err(missing_partner(&key.origin, &TLS_CERT)),
        }
    }

    /// The soft and hard output limits; the hard one must leave room for the soft one.
    pub(super) fn output_limits(&mut self) -> Result<(usize, usize), ConfigError> {
        let pending = self.required(&MAX_PENDING_OUTPUT, bytes(1))?;
        let hard = self.required(&MAX_OUTPUT_BUFFER, bytes(MIN_OUTPUT_BUFFER))?;
        if hard.value < pending.value {
            return Err(ConfigError::Conflict(format!(
                "{} sets the hard output limit to {}, below the soft limit of {} set by {}; \
                 --max-output-buffer must be at least --max-pending-output",
                hard.origin, hard.value, pending.value, pending.origin
            )));
        }
        Ok((pending.value, hard.value))
    }

    /// The secret of `kind` from `source`, per spec §17.3; the secret never appears in an error.
    fn secret(
        kind: &SecretKind,
        source: Option<TokenSource>,
    ) -> Result<Option<Secret>, ConfigError> {
        let (origin, token) = match source {
            None => return Ok(None),
            Some(TokenSource::Inline(raw)) => {
                let token = raw.text.trim();
                let checked = check_token(kind, token).map(|()| Secret::new(token));
                (raw.origin, checked)
            }
            Some(TokenSource::File(raw)) => (raw.origin, secret_from_file(kind, &raw.text)),
        };
        token
            .map(Some)
            .map_err(|problem| ConfigError::Invalid { origin, problem })
    }

    /// First match of: the explicit flag with the secret (`--auth-token`), the explicit flag with
    /// its file (`--auth-token-file`), then the non-empty variables in the same order. The auth
    /// token follows spec §17.3, and the admin token the same rule.
    ///
    /// Unlike spec §17.3, an explicit flag counts even when empty, and then fails validation: the same
    /// rule as for every other source (and for `dflockctl`), so `--auth-token "$UNSET"` stops the server
    /// instead of starting it with authentication off.
    pub(super) fn token_source(&mut self, kind: &SecretKind) -> Option<TokenSource> {
        self.flag_value(kind.inline)
            .map(TokenSource::Inline)
            .or_else(|| self.flag_value(kind.file).map(TokenSource::File))
            .or_else(|| self.env_value(kind.inline).map(TokenSource::Inline))
            .or_else(|| self.env_value(kind.file).map(TokenSource::File))
    }

    /// Warns once for each ignored HTTP-API flag that was given.
    pub(super) fn warn_about_ignored_flags(&mut self) {
        for flag in IGNORED_HTTP_FLAGS {
            if self.matches.contains_id(flag) {
                self.warnings.push(format!(
                    "--{flag} has no effect: this server has no HTTP API"
                ));
            }
        }
    }
}

/// The path a secret is read from, if it comes from a file: SIGHUP reads it again.
fn file_of(source: &Option<TokenSource>) -> Option<PathBuf> {
    match source {
        Some(TokenSource::File(raw)) => Some(PathBuf::from(&raw.text)),
        _ => None,
    }
}

/// Refuses an admin token equal to the auth token: every client that may connect would be an
/// admin. The message names neither token.
pub(super) fn distinct_secrets(config: &Config) -> Result<(), ConfigError> {
    match (&config.auth_token, &config.admin_token) {
        (Some(auth), Some(admin)) if auth.expose() == admin.expose() => {
            Err(ConfigError::Conflict(SAME_SECRETS.to_owned()))
        }
        _ => Ok(()),
    }
}

/// Why two equal secrets are refused, at start-up and on SIGHUP.
pub const SAME_SECRETS: &str = "the admin token is the same as the auth token: every client \
     that may connect would be an admin; give --admin-token (or --admin-token-file) a secret \
     of its own";

/// A warning when `config`'s read timeout would cut off clients that ping at the official interval.
pub(super) fn read_timeout_warning(config: &Config) -> Option<String> {
    (config.read_timeout_s < MIN_SUBSCRIBER_SAFE_READ_TIMEOUT_S).then(|| {
        format!(
            "the read timeout of {}s is below {MIN_SUBSCRIBER_SAFE_READ_TIMEOUT_S}s: official clients \
             ping every 15s, so idle signal subscribers and `dflockctl run` would be disconnected",
            config.read_timeout_s
        )
    })
}

/// Parses `raw.text`, attributing a failure to `raw.origin`.
pub(super) fn parse_raw<T>(
    raw: Raw,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Sourced<T>, ConfigError> {
    match parse(&raw.text) {
        Ok(value) => Ok(Sourced {
            value,
            origin: raw.origin,
        }),
        Err(problem) => Err(ConfigError::Invalid {
            origin: raw.origin,
            problem,
        }),
    }
}

/// The error for one TLS file configured without the other.
pub(super) fn missing_partner(origin: &Origin, missing: &Setting) -> ConfigError {
    ConfigError::Conflict(format!(
        "TLS needs both a certificate and a key: {origin} is set, but neither --{} nor {} is",
        missing.flag, missing.env
    ))
}

/// A parser for an integer in `min..=max`; `what` names the expected value in messages.
pub(super) fn bounded<T>(min: T, max: T, what: &'static str) -> impl Fn(&str) -> Result<T, String>
where
    T: FromStr<Err = ParseIntError> + PartialOrd + fmt::Display + Copy,
{
    move |text| {
        let value: T = text
            .parse()
            .map_err(|error| format!("{text:?} is not a valid {what}: {error}"))?;
        if value < min {
            Err(format!("{value} is too small: the minimum is {min}"))
        } else if value > max {
            Err(format!("{value} is too large: the maximum is {max}"))
        } else {
            Ok(value)
        }
    }
}

/// A parser for whole seconds in `min..=MAX_SECONDS`.
pub(super) fn seconds(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    bounded(min, MAX_SECONDS, "number of seconds")
}

/// A parser for whole milliseconds in `min..=MAX_SECONDS * 1000`.
pub(super) fn millis(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    bounded(min, MAX_SECONDS * 1000, "number of milliseconds")
}

/// A parser for a count of at least `min`.
pub(super) fn count(min: u64) -> impl Fn(&str) -> Result<u64, String> {
    bounded(min, u64::MAX, "number")
}

/// A parser for a byte size of at least `min`.
pub(super) fn bytes(min: usize) -> impl Fn(&str) -> Result<usize, String> {
    bounded(min, usize::MAX, "number of bytes")
}

/// Booleans as the spec spells them, in any case.
pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" => Ok(true),
        "0" | "no" | "false" => Ok(false),
        _ => Err(format!(
            "{text:?} is not a boolean: use true/false, yes/no or 1/0"
        )),
    }
}

/// `HOST:PORT`: a host name or IP literal (IPv6 in brackets) and a port. The name is resolved
/// when the server binds, at start-up.
pub(super) fn parse_host_port(text: &str) -> Result<String, String> {
    let invalid = || format!("{text:?} is not HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if host.is_empty() || (bare.is_none() && host.contains(':')) || port.parse::<u16>().is_err() {
        return Err(invalid());
    }
    Ok(text.to_owned())
}

/// `text` or `json`.
pub(super) fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{text:?} is not a log format: use text or json")),
    }
}

/// A bind host; a bracketed IPv6 literal is accepted and stored without its brackets.
pub(super) fn parse_host(text: &str) -> Result<String, String> {
    let host = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text);
    if host.is_empty() {
        return Err("the host must not be empty".to_owned());
    }
    Ok(host.to_owned())
}

/// Permission bits in octal (`0660`, `660` or `0o660`), at most `0777`.
pub(super) fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 0660"))?;
    if mode > 0o777 {
        return Err(format!(
            "{text} is too large: permission bits go up to 0777"
        ));
    }
    Ok(mode)
}

/// A parser for a comma-separated list of numeric ids (spaces around the commas allowed); `what`
/// names one id in messages. An empty list is a mistake rather than "nobody".
pub(super) fn id_list(what: &'static str) -> impl Fn(&str) -> Result<Vec<u32>, String> {
    move |text| {
        let ids = text
            .split(',')
            .map(|id| {
                let id = id.trim();
                id.parse::<u32>()
                    .map_err(|error| format!("{id:?} is not a valid {what}: {error}"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        Ok(ids)
    }
}

/// A file path; an empty one is a mistake rather than "unset".
pub(super) fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the path must not be empty".to_owned());
    }
    Ok(PathBuf::from(text))
}

/// The auth token in the file at `path`, trimmed and checked: at start-up, and again when
/// SIGHUP asks the server to reload it.
pub fn auth_token_from_file(path: &str) -> Result<Secret, String> {
    secret_from_file(&AUTH, path)
}

/// The admin token in the file at `path`, checked as [`auth_token_from_file`] checks the auth
/// token.
pub fn admin_token_from_file(path: &str) -> Result<Secret, String> {
    secret_from_file(&ADMIN, path)
}

/// The secret of `kind` in the file at `path`, trimmed and checked.
fn secret_from_file(kind: &SecretKind, path: &str) -> Result<Secret, String> {
    let content = read_token_file(kind, path)?;
    let token = content.trim();
    check_token(kind, token)?;
    Ok(Secret::new(token))
}

/// The whole content of the token file at `path`, up to a sanity bound.
pub(super) fn read_token_file(kind: &SecretKind, path: &str) -> Result<String, String> {
    let name = kind.name;
    if path.is_empty() {
        return Err(format!(
            "the {name} file path is empty; omit the setting to {}",
            kind.unset
        ));
    }
    let path = Path::new(path);
    let unreadable =
        |error: std::io::Error| format!("cannot read {name} file {}: {error}", path.display());
    let mut content = Vec::new();
    File::open(path)
        .and_then(|file| {
            file.take(MAX_AUTH_TOKEN_FILE_BYTES + 1)
                .read_to_end(&mut content)
        })
        .map_err(unreadable)?;
    if content.len() as u64 > MAX_AUTH_TOKEN_FILE_BYTES {
        return Err(format!(
            "{name} file {} is larger than {MAX_AUTH_TOKEN_FILE_BYTES} bytes",
            path.display()
        ));
    }
    String::from_utf8(content)
        .map_err(|_| format!("{name} file {} is not valid UTF-8", path.display()))
}

/// Checks a trimmed token; messages describe the problem without quoting the token.
pub(super) fn check_token(kind: &SecretKind, token: &str) -> Result<(), String> {
    let name = kind.name;
    if token.is_empty() {
        Err(format!(
            "the {name} is empty or blank; omit the setting to {}",
            kind.unset
        ))
    } else if token.contains(['\r', '\n']) {
        Err(format!("the {name} contains a line break (CR or LF)"))
    } else if token.len() > MAX_AUTH_TOKEN_BYTES {
        Err(format!(
            "the {name} is {} bytes long; clients can send at most {MAX_AUTH_TOKEN_BYTES}",
            token.len()
        ))
    } else {
        Ok(())
    }
}
