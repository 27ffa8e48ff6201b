//! `dflockctl stats` and `dflockctl ping`: ask every server and report each one's answer.

use std::fmt::Write as _;

use dflockd::client::{Client, Connection, Error, Stats};

use crate::{Failure, exit};

/// Asks every server, reporting the ones that fail on stderr without hiding the others; the
/// status is the first failure's.
pub(crate) fn stats(client: &Client, json: bool) -> Result<u8, Failure> {
    let mut status = 0;
    let mut by_server = serde_json::Map::new();
    for (index, server) in client.servers().iter().enumerate() {
        let asked = client.connect(index).and_then(|mut conn| {
            if json {
                by_server.insert(server.clone(), stats_value(&mut conn)?);
            } else {
                print!("{}", render_stats(server, &conn.stats()?));
            }
            Ok(())
        });
        if let Err(e) = asked {
            let failure = Failure::client(server, &e);
            eprintln!("dflockctl: {}", failure.message);
            if status == 0 {
                status = failure.status;
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(by_server));
    }
    Ok(status)
}

/// The server's `stats` payload as JSON, unchanged.
pub(crate) fn stats_value(conn: &mut Connection) -> Result<serde_json::Value, Error> {
    let payload = conn.stats_json()?;
    serde_json::from_str(&payload)
        .map_err(|e| Error::Protocol(format!("a stats payload that is not JSON: {e}")))
}

/// Aligned columns under a header row.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

pub(crate) fn render_stats(server: &str, stats: &Stats) -> String {
    let mut out = format!("{server}: {} connections\n", stats.connections);
    let seconds = |s: f64| format!("{s:.1}s");
    let mut section = |title: &str, header: &[&str], rows: Vec<Vec<String>>| {
        if !rows.is_empty() {
            let _ = write!(out, "{title}\n{}", table(header, &rows));
        }
    };
    section(
        "locks",
        &["KEY", "OWNER", "LEASE LEFT", "WAITERS"],
        stats
            .locks
            .iter()
            .map(|l| {
                vec![
                    l.key.clone(),
                    l.owner_conn_id.to_string(),
                    seconds(l.lease_expires_in_s),
                    l.waiters.to_string(),
                ]
            })
            .collect(),
    );
    section(
        "semaphores",
        &["KEY", "LIMIT", "HOLDERS", "WAITERS"],
        stats
            .semaphores
            .iter()
            .map(|s| {
                vec![
                    s.key.clone(),
                    s.limit.to_string(),
                    s.holders.to_string(),
                    s.waiters.to_string(),
                ]
            })
            .collect(),
    );
    let idle = |kind: &str, entries: &[dflockd::client::IdleStats]| {
        entries
            .iter()
            .map(|i| vec![i.key.clone(), kind.to_owned(), seconds(i.idle_s)])
            .collect::<Vec<_>>()
    };
    let mut idle_rows = idle("lock", &stats.idle_locks);
    idle_rows.extend(idle("semaphore", &stats.idle_semaphores));
    section("idle", &["KEY", "KIND", "IDLE"], idle_rows);
    section(
        "signal subscriptions",
        &["PATTERN", "GROUP", "LISTENERS"],
        stats
            .signal_channels
            .iter()
            .map(|c| {
                vec![
                    c.pattern.clone(),
                    c.group.clone().unwrap_or_else(|| "-".to_owned()),
                    c.listeners.to_string(),
                ]
            })
            .collect(),
    );
    out
}

pub(crate) fn ping(client: &Client) -> Result<u8, Failure> {
    let mut status = 0;
    for (index, server) in client.servers().iter().enumerate() {
        match client.ping(index) {
            Ok(rtt) => println!("{server}: ok ({:.2} ms)", rtt.as_secs_f64() * 1e3),
            Err(e) => {
                println!("{server}: {e}");
                status = exit::UNAVAILABLE;
            }
        }
    }
    Ok(status)
}
