//! `dflockctl top`: every server's `info`, refreshed each interval, side by side: rates of
//! grants, lost leases, timeouts and signals since the last refresh, the gauges, and each
//! server's most contended keys.

use std::io::{IsTerminal as _, Write as _};
use std::thread;
use std::time::{Duration, Instant};

use dflockd::client::{Client, Info, NamespaceInfo};

use crate::inspect::table;
use crate::{Failure, exit};

/// One server's last two answers.
#[derive(Default)]
struct Column {
    server: String,
    now: Option<Info>,
    before: Option<Info>,
    error: Option<String>,
}

/// Runs the view until interrupted; with `once`, takes one sample (two, `interval` apart, so
/// that rates mean something) and exits. With `json`, prints one JSON object per sample mapping
/// each server to its payload.
pub(crate) fn top(
    client: &Client,
    once: bool,
    json: bool,
    interval: Duration,
) -> Result<u8, Failure> {
    let mut columns: Vec<Column> = client
        .servers()
        .iter()
        .map(|server| Column {
            server: server.clone(),
            ..Column::default()
        })
        .collect();
    let terminal = std::io::stdout().is_terminal() && !json;
    let mut last = Instant::now();
    for sample in 0.. {
        sample_all(client, &mut columns);
        let elapsed = last.elapsed();
        last = Instant::now();
        // The first sample has nothing to compare with: a rate needs the second.
        let ready = sample > 0 || !once;
        if ready {
            let text = if json {
                render_json(&columns)
            } else {
                render(&columns, elapsed)
            };
            let mut out = std::io::stdout().lock();
            if terminal {
                // Home and clear, so the view redraws in place.
                let _ = out.write_all(b"\x1b[H\x1b[2J");
            }
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                // The reader went away (a closed pipe): nothing left to show.
                return Ok(0);
            }
        }
        if once && sample > 0 {
            break;
        }
        thread::sleep(interval);
    }
    let failed = columns.iter().any(|c| c.error.is_some());
    Ok(if failed { exit::UNAVAILABLE } else { 0 })
}

/// Asks every server once; a server that fails keeps its column with the error.
fn sample_all(client: &Client, columns: &mut [Column]) {
    for (index, column) in columns.iter_mut().enumerate() {
        match client.info(index) {
            Ok(info) => {
                column.before = column.now.replace(info);
                column.error = None;
            }
            Err(e) => {
                column.before = None;
                column.now = None;
                column.error = Some(e.to_string());
            }
        }
    }
}

/// A counter summed over both namespaces.
fn both(info: &Info, pick: fn(&NamespaceInfo) -> u64) -> u64 {
    pick(&info.lock) + pick(&info.semaphore)
}

/// Per-second rate of a counter between two samples.
fn rate(now: u64, before: Option<u64>, elapsed: Duration) -> String {
    match before {
        Some(before) if elapsed > Duration::ZERO => {
            let per_s = now.saturating_sub(before) as f64 / elapsed.as_secs_f64();
            format!("{per_s:.1}/s")
        }
        _ => "-".to_owned(),
    }
}

/// The rows of the side-by-side table: one per measure, one column per server.
fn rows(columns: &[Column], elapsed: Duration) -> Vec<Vec<String>> {
    type Pick = fn(&Info) -> u64;
    let gauges: [(&str, Pick); 8] = [
        ("connections", |i| i.connections),
        ("lock keys", |i| i.lock.keys),
        ("lock holders", |i| i.lock.holders),
        ("lock waiters", |i| i.lock.waiters),
        ("sem keys", |i| i.semaphore.keys),
        ("sem holders", |i| i.semaphore.holders),
        ("sem waiters", |i| i.semaphore.waiters),
        ("subscriptions", |i| i.subscriptions),
    ];
    let counters: [(&str, Pick); 6] = [
        ("grants", |i| both(i, |n| n.grants)),
        ("releases", |i| both(i, |n| n.releases)),
        ("lost leases", |i| both(i, |n| n.lease_expirations)),
        ("timeouts", |i| both(i, |n| n.acquire_timeouts)),
        ("signals", |i| i.signals_published),
        ("deliveries", |i| i.signal_deliveries),
    ];
    let mut rows = Vec::new();
    for (name, pick) in gauges {
        let mut row = vec![name.to_owned()];
        row.extend(columns.iter().map(|c| match &c.now {
            Some(info) => pick(info).to_string(),
            None => "-".to_owned(),
        }));
        rows.push(row);
    }
    for (name, pick) in counters {
        let mut row = vec![name.to_owned()];
        row.extend(columns.iter().map(|c| match &c.now {
            Some(info) => rate(pick(info), c.before.as_ref().map(pick), elapsed),
            None => "-".to_owned(),
        }));
        rows.push(row);
    }
    rows
}

/// The text view: the table, then each server's contended keys (or its error).
fn render(columns: &[Column], elapsed: Duration) -> String {
    let mut header = vec![""];
    header.extend(columns.iter().map(|c| c.server.as_str()));
    let mut out = table(&header, &rows(columns, elapsed));
    for column in columns {
        if let Some(error) = &column.error {
            out += &format!("\n{}: {error}\n", column.server);
            continue;
        }
        let Some(info) = &column.now else { continue };
        for (ns, namespace) in [("lock", &info.lock), ("semaphore", &info.semaphore)] {
            if namespace.contended.is_empty() {
                continue;
            }
            out += &format!("\n{} most contended {ns} keys:\n", column.server);
            let rows: Vec<Vec<String>> = namespace
                .contended
                .iter()
                .map(|k| {
                    vec![
                        k.key.clone(),
                        k.waiters.to_string(),
                        k.oldest_wait_ms.to_string(),
                        k.holder_conn_id.to_string(),
                        k.holder_peer.clone(),
                        k.held_ms.to_string(),
                    ]
                })
                .collect();
            out += &table(
                &[
                    "key",
                    "waiters",
                    "oldest wait ms",
                    "holder",
                    "peer",
                    "held ms",
                ],
                &rows,
            );
        }
    }
    out
}

/// One JSON object: each server's address mapped to its `info` payload, or to `null` when it
/// did not answer.
fn render_json(columns: &[Column]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|c| {
            let value = c
                .now
                .as_ref()
                .and_then(|info| serde_json::to_value(info).ok())
                .unwrap_or(serde_json::Value::Null);
            (c.server.clone(), value)
        })
        .collect();
    format!("{}\n", serde_json::Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dflockd::client::Contended;

    fn info(grants: u64, waiters: u64) -> Info {
        Info {
            connections: 3,
            lock: NamespaceInfo {
                grants,
                waiters,
                contended: vec![Contended {
                    key: "orders".into(),
                    waiters,
                    oldest_wait_ms: 900,
                    holder_conn_id: 4,
                    holder_peer: "127.0.0.1:5000".into(),
                    held_ms: 1500,
                }],
                ..NamespaceInfo::default()
            },
            ..Info::default()
        }
    }

    #[test]
    fn rates_come_from_the_last_two_samples_and_columns_sit_side_by_side() {
        let columns = [
            Column {
                server: "a:1".into(),
                now: Some(info(150, 2)),
                before: Some(info(100, 1)),
                error: None,
            },
            Column {
                server: "b:2".into(),
                error: Some("connection refused".into()),
                ..Column::default()
            },
        ];
        let text = render(&columns, Duration::from_secs(2));
        let grants = text
            .lines()
            .find(|l| l.contains("grants"))
            .expect("grants row");
        assert!(grants.contains("25.0/s"), "{grants}");
        assert!(grants.trim_end().ends_with('-'), "{grants}");
        assert!(
            text.lines()
                .next()
                .is_some_and(|h| h.contains("a:1") && h.contains("b:2"))
        );
        assert!(text.contains("a:1 most contended lock keys"));
        assert!(text.contains("orders"));
        assert!(text.contains("b:2: connection refused"));
    }

    #[test]
    fn the_first_sample_has_no_rate_and_json_maps_servers_to_payloads() {
        assert_eq!(rate(10, None, Duration::from_secs(1)), "-");
        let columns = [Column {
            server: "a:1".into(),
            now: Some(info(1, 0)),
            ..Column::default()
        }];
        let json: serde_json::Value = serde_json::from_str(&render_json(&columns)).expect("json");
        assert_eq!(json["a:1"]["lock"]["grants"], 1);
    }
}
