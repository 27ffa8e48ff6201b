//! The files in `deploy/`: the systemd units pass `systemd-analyze verify` (where it is
//! installed), the Kubernetes manifests hang together (shared socket volume, grace period,
//! probes, shard order), and the real binary starts and serves with each manifest's arguments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{TempDir, TestServer};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// The documents of a manifest.
fn manifest(name: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(deploy(&format!("kubernetes/{name}"))).expect("manifest");
    YamlLoader::load_from_str(&text).expect("valid YAML")
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|doc| doc["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn containers(workload: &Yaml) -> &[Yaml] {
    workload["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("containers")
}

fn container<'a>(workload: &'a Yaml, name: &str) -> &'a Yaml {
    containers(workload)
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// A container's arguments as `--flag=value` pairs (every argument in deploy/ has that form,
/// or is a bare switch).
fn args(container: &Yaml) -> Vec<String> {
    container["args"]
        .as_vec()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("string argument").to_owned())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|arg| arg.strip_prefix(&prefix))
}

/// The port a probe or service names: a number, or a container port's name.
fn port_number(container: &Yaml, port: &Yaml) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    let name = port.as_str().expect("port name or number");
    container["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// The dflockd container's probes and grace period agree with its arguments.
fn check_lifecycle(workload: &Yaml, dflockd: &Yaml) {
    let args = args(dflockd);
    let grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    let drain: i64 = flag(&args, "shutdown-timeout")
        .expect("--shutdown-timeout")
        .parse()
        .expect("seconds");
    assert!(
        grace > drain,
        "the grace period {grace} s must outlast the drain {drain} s"
    );
    let probe = &dflockd["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"].as_str(), Some("/readyz"));
    let metrics = flag(&args, "metrics-addr").expect("--metrics-addr");
    let metrics_port: i64 = metrics.rsplit(':').next().unwrap().parse().expect("port");
    assert_eq!(port_number(dflockd, &probe["port"]), metrics_port);
}

/// A manifest's arguments made runnable here: files in `dir`, ephemeral ports, loopback.
fn runnable(args: &[String], dir: &TempDir) -> Vec<String> {
    let mut files: HashMap<&str, String> = HashMap::new();
    args.iter()
        .map(|arg| {
            let (name, value) = arg.split_once('=').unwrap_or((arg, ""));
            match name {
                "--host" => "--host=127.0.0.1".to_owned(),
                "--port" => "--port=0".to_owned(),
                "--metrics-addr" => "--metrics-addr=127.0.0.1:0".to_owned(),
                "--unix-socket" => {
                    let name = Path::new(value).file_name().unwrap().to_str().unwrap();
                    format!("--unix-socket={}", dir.path(name))
                }
                "--auth-token-file" => {
                    let path = files
                        .entry("token")
                        .or_insert_with(|| dir.file("token", b"deploy-test-token\n"));
                    format!("--auth-token-file={path}")
                }
                _ => arg.clone(),
            }
        })
        .collect()
}

#[test]
fn the_sidecar_shares_its_socket_and_serves_with_its_arguments() {
    let docs = manifest("sidecar.yaml");
    let deployment = of_kind(&docs, "Deployment");
    let dflockd = container(deployment, "dflockd");
    let app = container(deployment, "app");
    let args = args(dflockd);
    let socket = flag(&args, "unix-socket").expect("--unix-socket");
    check_lifecycle(deployment, dflockd);

    // Both containers mount the same emptyDir at the socket's directory.
    let mount_of = |container: &Yaml| -> (String, String) {
        container["volumeMounts"]
            .as_vec()
            .expect("volumeMounts")
            .iter()
            .find(|m| {
                let dir = m["mountPath"].as_str().unwrap_or("/nowhere");
                Path::new(socket).parent() == Some(Path::new(dir))
            })
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["mountPath"].as_str().unwrap().to_owned(),
                )
            })
            .unwrap_or_else(|| panic!("no mount holds {socket}"))
    };
    let (volume, _) = mount_of(dflockd);
    assert_eq!(
        mount_of(app).0,
        volume,
        "app and dflockd share the socket's volume"
    );
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .expect("volumes");
    let shared = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some(volume.as_str()))
        .expect("the mounted volume is declared");
    assert!(
        !shared["emptyDir"].is_badvalue(),
        "the socket lives on an emptyDir"
    );
    let servers = app["env"]
        .as_vec()
        .expect("env")
        .iter()
        .find(|e| e["name"].as_str() == Some("DFLOCKD_SERVERS"))
        .and_then(|e| e["value"].as_str())
        .expect("DFLOCKD_SERVERS");
    assert_eq!(servers, format!("unix:{socket}"));

    let dir = TempDir::new();
    let args = runnable(&args, &dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start(&args);
    let path = dir.path(Path::new(socket).file_name().unwrap().to_str().unwrap());
    let client = dflockd::client::Client::new([format!("unix:{path}")]).expect("client");
    client.ping(0).expect("ping over the sidecar's socket");
    let ready = crate::metrics::get(server.metrics_addr(), "/readyz");
    assert_eq!(ready.status, 200, "the readiness probe passes");
    drop(server);
}

#[test]
fn the_sharded_clients_list_every_replica_in_order_and_each_serves() {
    let docs = manifest("sharded.yaml");
    let set = of_kind(&docs, "StatefulSet");
    let service = of_kind(&docs, "Service");
    let name = set["metadata"]["name"].as_str().expect("name");
    assert_eq!(
        service["spec"]["clusterIP"].as_str(),
        Some("None"),
        "headless"
    );
    assert_eq!(
        set["spec"]["serviceName"].as_str(),
        service["metadata"]["name"].as_str()
    );
    let replicas = set["spec"]["replicas"].as_i64().expect("replicas");
    let dflockd = container(set, "dflockd");
    check_lifecycle(set, dflockd);
    let args = args(dflockd);
    let port = flag(&args, "port").expect("--port");
    let servers = of_kind(&docs, "ConfigMap")["data"]["DFLOCKD_SERVERS"]
        .as_str()
        .expect("DFLOCKD_SERVERS");
    let expected: Vec<String> = (0..replicas)
        .map(|i| format!("{name}-{i}.{name}:{port}"))
        .collect();
    assert_eq!(
        servers.trim(),
        expected.join(","),
        "one entry per replica, in order"
    );

    let dir = TempDir::new();
    let args = runnable(&args, &dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start(&args);
    let client = dflockd::client::Client::builder([server.addr.to_string()])
        .auth_token("deploy-test-token")
        .build()
        .expect("client");
    client.ping(0).expect("ping with the token file's token");
}

#[test]
fn the_systemd_units_verify_and_the_service_arguments_serve() {
    let service = std::fs::read_to_string(deploy("systemd/dflockd.service")).expect("unit");
    let exec = service
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    let binary = words.next().expect("binary");
    let args: Vec<String> = words.map(str::to_owned).collect();

    // The flags parse and the server serves with them (on core 0: this machine may have fewer).
    let mut runnable: Vec<&str> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--cpu" {
            iter.next();
            runnable.extend(["--cpu", "0"]);
        } else {
            runnable.push(arg);
        }
    }
    let server = TestServer::start(&runnable);
    let mut client = server.connect();
    assert_eq!(client.request("ping", "_", ""), "ok");
    drop(server);

    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("SKIPPED: systemd-analyze is not installed; the units were not verified");
        return;
    }
    let dir = TempDir::new();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(deploy("systemd")).expect("deploy/systemd") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("UTF-8 name");
        let text = std::fs::read_to_string(entry.path()).expect("unit");
        let text = text.replace(binary, env!("CARGO_BIN_EXE_dflockd"));
        units.push(dir.file(&name, text.as_bytes()));
    }
    units.sort();
    let verified = Command::new(analyze)
        .arg("verify")
        .args(&units)
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success(),
        "systemd-analyze verify: {stderr}"
    );
    assert!(stderr.trim().is_empty(), "systemd-analyze warned: {stderr}");
}
