//! `dflockd-bench stall` against the real server: every scenario sets up its bulk work,
//! triggers it, checks the server's effect, and reports the probe's three windows.

use std::process::{Command, Output};

use crate::support::TestServer;

/// Runs `dflockd-bench stall` with `args` against `server`.
fn stall(server: &TestServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dflockd-bench"))
        .arg("stall")
        .args(["--servers", &server.addr.to_string(), "--json"])
        .args(args)
        .output()
        .expect("run dflockd-bench")
}

/// The JSON report of a run that must succeed.
fn report(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let output = stall(server, args);
    assert!(
        output.status.success(),
        "stall {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the report is one JSON object");
    for window in ["baseline", "setup", "bulk"] {
        assert!(report[window]["window_s"].as_f64().is_some(), "{window}");
    }
    assert!(report["baseline"]["pings"].as_u64() > Some(0));
    report
}

#[test]
fn every_scenario_runs_against_a_default_server() {
    let server = TestServer::start(&[]);
    let fanout = report(&server, &["--scenario", "fanout", "--size", "20"]);
    assert_eq!(fanout["scenario"], "fanout");
    let stats = report(&server, &["--scenario", "stats", "--size", "300"]);
    assert_eq!(stats["size"], 300);
    let disconnect = report(&server, &["--scenario", "disconnect", "--size", "300"]);
    assert_eq!(disconnect["locks"], 300.0);
    assert!(disconnect["all_released_s"].as_f64() < Some(5.0));
    let expiry = report(
        &server,
        &["--scenario", "expiry", "--size", "300", "--lease", "1"],
    );
    assert_eq!(expiry["leases"], 300.0);
    let sweep = report(
        &server,
        &["--scenario", "sweep", "--size", "300", "--lease", "1"],
    );
    assert_eq!(sweep["holders"], 300.0);
    assert!(sweep["acquires_meanwhile"].as_f64() > Some(0.0));
}

#[test]
fn orphan_needs_a_server_that_keeps_a_departed_clients_locks() {
    let keeps = TestServer::start(&["--no-auto-release-on-disconnect"]);
    let orphan = report(&keeps, &["--scenario", "orphan", "--size", "300"]);
    assert_eq!(orphan["locks"], 300.0);

    let releases = TestServer::start(&[]);
    let output = stall(&releases, &["--scenario", "orphan", "--size", "300"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--no-auto-release-on-disconnect"),
        "{stderr}"
    );
}
