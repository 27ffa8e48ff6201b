//! What the server reports about itself: the `info` payload and the Prometheus exposition of
//! the monitoring endpoint. Both read the same counters (the dispatcher's, the engine's and
//! the loop's), and both are bounded work however many keys exist: no per-key series, and the
//! contended-key ranking examines a bounded number of keys (`Engine::contended`).

use crate::client::{Contended, Info, NamespaceInfo};
use crate::clock::Millis;
use crate::engine::{ContendedKey, Engine};
use crate::metrics::{self, Histogram, Kind, Label};
use crate::protocol::response::Status;
use crate::protocol::{COMMAND_COUNT, Command, Namespace};

use super::connection::Connections;
use super::dispatch::Counters;
use super::monitor::MonitorCounters;

/// Keys listed per namespace by `info` and `dflockctl top`.
pub const CONTENDED_LISTED: usize = 10;

/// The loop's own figures: kept by the server loop, read by reports.
#[derive(Debug, Default)]
pub struct LoopFigures {
    /// When the server started, in seconds since the Unix epoch.
    pub start_time_s: f64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections refused at `--max-connections`.
    pub refused_max_connections: u64,
    /// Connections refused at `--max-connections-per-ip`.
    pub refused_per_ip: u64,
    /// Duration of each loop turn that did work.
    pub turns: Histogram,
}

/// Everything a report reads, borrowed for the moment of writing it.
pub struct Sources<'a, T> {
    /// The engine.
    pub engine: &'a Engine,
    /// Every protocol connection (for the count and the peers of holders).
    pub conns: &'a Connections<T>,
    /// The dispatcher's counters.
    pub counters: &'a Counters,
    /// The loop's figures.
    pub figures: &'a LoopFigures,
    /// The monitoring endpoint's own counters.
    pub http: MonitorCounters,
    /// The engine clock now: milliseconds since the server started.
    pub now: Millis,
}

const NAMESPACES: [(Namespace, &str); 2] = [
    (Namespace::Lock, "lock"),
    (Namespace::Semaphore, "semaphore"),
];

impl<T> Sources<'_, T> {
    fn rejected(&self) -> [(&'static str, u64); 5] {
        [
            ("max_connections", self.figures.refused_max_connections),
            ("max_connections_per_ip", self.figures.refused_per_ip),
            ("auth", self.counters.auth_failures),
            ("tls_handshake", self.counters.tls_handshake_failures),
            ("unix_peer", self.counters.refused_unix_peers),
        ]
    }

    /// The `info` payload.
    pub fn info(&self) -> Info {
        Info {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: self.now.0 as f64 / 1000.0,
            connections: self.conns.len() as u64,
            connections_accepted: self.figures.accepted,
            connections_rejected: self.rejected().iter().map(|(_, n)| n).sum(),
            requests: self.counters.requests,
            lock: self.namespace(Namespace::Lock),
            semaphore: self.namespace(Namespace::Semaphore),
            subscriptions: self.engine.subscriptions(),
            signals_published: self.engine.metrics().signals_published_total(),
            signal_deliveries: self.engine.metrics().signal_deliveries_total(),
            slow_consumers_disconnected: self.counters.slow_consumers,
        }
    }

    fn namespace(&self, ns: Namespace) -> NamespaceInfo {
        let gauges = self.engine.gauges(ns);
        let m = self.engine.metrics().ns(ns);
        NamespaceInfo {
            keys: gauges.keys,
            holders: gauges.holders,
            waiters: gauges.waiters,
            grants: m.grants_total(),
            releases: m.releases_total(),
            lease_expirations: m.lease_expirations_total(),
            disconnect_releases: m.disconnect_releases_total(),
            evictions: m.evictions_total(),
            acquire_timeouts: m.acquire_timeouts_total(),
            contended: self
                .engine
                .contended(ns, CONTENDED_LISTED, self.now)
                .into_iter()
                .map(|key| self.contended(key))
                .collect(),
        }
    }

    fn contended(&self, key: ContendedKey) -> Contended {
        let peer = key
            .holder
            .and_then(|client| self.conns.get_ref(client))
            .map_or_else(String::new, |conn| conn.peer.to_string());
        Contended {
            key: String::from_utf8_lossy(&key.key).into_owned(),
            holder_conn_id: key.holder_serial,
            holder_peer: peer,
            held_ms: key.held_ms,
            waiters: key.waiters,
            oldest_wait_ms: key.oldest_wait_ms,
        }
    }

    /// The Prometheus text exposition (format 0.0.4). Every label value known in advance is
    /// written from start-up, at 0 until something happens.
    pub fn exposition(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        self.write_process(&mut out);
        self.write_traffic(&mut out);
        self.write_namespaces(&mut out);
        self.write_signals(&mut out);
        out
    }

    fn write_process(&self, out: &mut Vec<u8>) {
        metrics::write_family_header(
            out,
            "dflockd_build_info",
            Kind::Gauge,
            "Always 1; the version is in the label.",
        );
        metrics::write_sample(
            out,
            "dflockd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            &1u64,
        );
        let single = |out: &mut Vec<u8>, name, kind, help, value: u64| {
            metrics::write_single(out, name, kind, help, &value);
        };
        metrics::write_single(
            out,
            "dflockd_start_time_seconds",
            Kind::Gauge,
            "When the server started, in seconds since the Unix epoch.",
            &self.figures.start_time_s,
        );
        single(
            out,
            "dflockd_connections",
            Kind::Gauge,
            "Open protocol connections.",
            self.conns.len() as u64,
        );
        single(
            out,
            "dflockd_connections_accepted_total",
            Kind::Counter,
            "Protocol connections accepted.",
            self.figures.accepted,
        );
        metrics::write_labelled(
            out,
            "dflockd_connections_rejected_total",
            Kind::Counter,
            "Protocol connections refused or closed at once, by reason.",
            "reason",
            &self.rejected(),
        );
        metrics::write_histograms(
            out,
            "dflockd_loop_turn_seconds",
            "Duration of each event-loop turn that did work: the server's own tail latency.",
            &[(&[], &self.figures.turns)],
        );
    }

    fn write_traffic(&self, out: &mut Vec<u8>) {
        let c = self.counters;
        let mut commands: Vec<(&str, u64)> = Command::all()
            .map(|command| (command.name(), c.commands[command.index()]))
            .collect();
        commands.push(("other", c.commands[COMMAND_COUNT]));
        metrics::write_labelled(
            out,
            "dflockd_requests_total",
            Kind::Counter,
            "Requests read, by command (`other` for unknown commands).",
            "command",
            &commands,
        );
        let statuses: Vec<(&str, u64)> = Status::ALL
            .iter()
            .map(|status| (status.word(), c.responses[*status as usize]))
            .collect();
        metrics::write_labelled(
            out,
            "dflockd_responses_total",
            Kind::Counter,
            "Response lines written, by their first word.",
            "status",
            &statuses,
        );
        let counters: [(&str, &str, u64); 6] = [
            (
                "dflockd_auth_failures_total",
                "Connections closed for a wrong or missing auth.",
                c.auth_failures,
            ),
            (
                "dflockd_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                c.tls_handshake_failures,
            ),
            (
                "dflockd_read_timeouts_total",
                "Connections closed because a request did not arrive within the read timeout.",
                c.read_timeouts,
            ),
            (
                "dflockd_bytes_read_total",
                "Bytes read from protocol connections (after TLS).",
                c.bytes_read,
            ),
            (
                "dflockd_bytes_written_total",
                "Bytes written to protocol connections (before TLS).",
                c.bytes_written,
            ),
            (
                "dflockd_slow_consumers_disconnected_total",
                "Subscribers disconnected because they did not read their signals.",
                c.slow_consumers,
            ),
        ];
        for (name, help, value) in counters {
            metrics::write_single(out, name, Kind::Counter, help, &value);
        }
    }

    fn write_namespaces(&self, out: &mut Vec<u8>) {
        type Pick = fn(&Engine, Namespace) -> u64;
        let families: [(&str, Kind, &str, Pick); 9] = [
            (
                "dflockd_keys",
                Kind::Gauge,
                "Keys that exist, idle ones included.",
                |e, ns| e.gauges(ns).keys,
            ),
            (
                "dflockd_holders",
                Kind::Gauge,
                "Current holders.",
                |e, ns| e.gauges(ns).holders,
            ),
            (
                "dflockd_waiters",
                Kind::Gauge,
                "Current waiters.",
                |e, ns| e.gauges(ns).waiters,
            ),
            ("dflockd_grants_total", Kind::Counter, "Grants.", |e, ns| {
                e.metrics().ns(ns).grants_total()
            }),
            (
                "dflockd_releases_total",
                Kind::Counter,
                "Explicit releases.",
                |e, ns| e.metrics().ns(ns).releases_total(),
            ),
            (
                "dflockd_lease_expirations_total",
                Kind::Counter,
                "Leases that ran out without a release: locks lost by their holders.",
                |e, ns| e.metrics().ns(ns).lease_expirations_total(),
            ),
            (
                "dflockd_disconnect_releases_total",
                Kind::Counter,
                "Holds released because the holder's connection ended.",
                |e, ns| e.metrics().ns(ns).disconnect_releases_total(),
            ),
            (
                "dflockd_evictions_total",
                Kind::Counter,
                "Holds ended by an admin's evict or sevict.",
                |e, ns| e.metrics().ns(ns).evictions_total(),
            ),
            (
                "dflockd_acquire_timeouts_total",
                Kind::Counter,
                "Acquires and waits that timed out.",
                |e, ns| e.metrics().ns(ns).acquire_timeouts_total(),
            ),
        ];
        for (name, kind, help, pick) in families {
            let samples = NAMESPACES.map(|(ns, label)| (label, pick(self.engine, ns)));
            metrics::write_labelled(out, name, kind, help, "ns", &samples);
        }
        let labels: [[Label<'_>; 1]; 2] = NAMESPACES.map(|(_, label)| [("ns", label)]);
        let series = |pick: fn(&crate::engine::NsMetrics) -> &Histogram| {
            [
                (
                    &labels[0][..],
                    pick(self.engine.metrics().ns(Namespace::Lock)),
                ),
                (
                    &labels[1][..],
                    pick(self.engine.metrics().ns(Namespace::Semaphore)),
                ),
            ]
        };
        metrics::write_histograms(
            out,
            "dflockd_wait_seconds",
            "Time from queued to granted (0 for immediate grants).",
            &series(|m| m.wait()),
        );
        metrics::write_histograms(
            out,
            "dflockd_hold_seconds",
            "Time from grant to release, expiry or disconnect.",
            &series(|m| m.hold()),
        );
    }

    fn write_signals(&self, out: &mut Vec<u8>) {
        let m = self.engine.metrics();
        metrics::write_single(
            out,
            "dflockd_subscriptions",
            Kind::Gauge,
            "Signal subscriptions.",
            &self.engine.subscriptions(),
        );
        metrics::write_single(
            out,
            "dflockd_signals_published_total",
            Kind::Counter,
            "Signals published.",
            &m.signals_published_total(),
        );
        metrics::write_single(
            out,
            "dflockd_signal_deliveries_total",
            Kind::Counter,
            "Signal pushes handed to subscribers.",
            &m.signal_deliveries_total(),
        );
        metrics::write_single(
            out,
            "dflockd_lock_events_dropped_total",
            Kind::Counter,
            "Lock events dropped because too many signal operations were waiting.",
            &m.lock_events_dropped_total(),
        );
        metrics::write_single(
            out,
            "dflockd_http_requests_total",
            Kind::Counter,
            "Requests the monitoring endpoint answered.",
            &self.http.requests,
        );
        metrics::write_single(
            out,
            "dflockd_http_connections_rejected_total",
            Kind::Counter,
            "Monitoring connections refused at --metrics-max-connections.",
            &self.http.refused,
        );
    }
}
