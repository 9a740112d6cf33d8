//! The `gatekit` executable: help, version, settings errors, exit statuses.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn gatekit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatekit"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatekit-cli-{}-{name}", std::process::id()));
    // A directory left by an earlier run whose process had the same id starts empty.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn help_lists_commands_and_examples() {
    let out = gatekit(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "run",
        "validate",
        "demo",
        "version",
        "Examples:",
        "gatekit run --resources",
        "/healthz",
        "/readyz",
        "/metrics",
        "/config",
        "/fleet",
        "RUST_LOG",
        "admin.tokenFile",
        "--probe-addr",
        "gatekit demo --write",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let out = gatekit(&["run", "--help"]);
    let text = stdout(&out);
    for needle in [
        "--resources <DIR>",
        "--config <FILE>",
        "--bind <ADDR>",
        "[default: 127.0.0.1]",
        "--probe-addr <ADDR:PORT>",
        "SIGTERM",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let out = gatekit(&["demo", "--help"]);
    let text = stdout(&out);
    for needle in ["--port <PORT>", "--admin-port <PORT>", "--write <DIR>"] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn version_prints_the_version() {
    let out = gatekit(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("gatekit {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = gatekit(&["run", "--resourcez", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--resources"), "{}", stderr(&out));
}

#[test]
fn run_without_a_source_says_which_to_give() {
    let out = gatekit(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("--resources") && err.contains("kubernetes"),
        "{err}"
    );
}

#[test]
fn bad_settings_name_the_field_and_exit_1() {
    let dir = temp_dir("bad-settings");
    let config = dir.join("gatekit.yaml");
    std::fs::write(&config, "drainTimeout: 5s\nlimits:\n  maxConection: 3\n").unwrap();
    let out = gatekit(&[
        "run",
        "--resources",
        dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("maxConection") && err.contains("gatekit.yaml"),
        "{err}"
    );
}

#[test]
fn missing_resource_dir_exits_1() {
    let out = gatekit(&["run", "--resources", "/nonexistent/gatekit-manifests"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/gatekit-manifests"),
        "{}",
        stderr(&out)
    );
    let out = gatekit(&["validate", "/nonexistent/gatekit-manifests"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn validate_exits_0_on_valid_manifests_and_1_on_broken_ones() {
    let dir = temp_dir("validate-ok");
    std::fs::write(
        dir.join("gw.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: gw }\nspec:\n  gatewayClassName: gatekit\n  listeners: [{ name: http, port: 8080, protocol: HTTP }]\n",
    )
    .unwrap();
    let out = gatekit(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Gateway default/gw"),
        "{}",
        stdout(&out)
    );
    std::fs::write(dir.join("broken.yaml"), "kind: HTTPRoute\nspec: [\n").unwrap();
    let out = gatekit(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("broken.yaml"), "{}", stdout(&out));
}

/// Starts `gatekit run` on an empty directory, waits for `until` on stderr, sends
/// SIGTERM and returns (exit code, stderr).
#[cfg(unix)]
fn run_until_line(name: &str, config: &str, until: &str) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    let dir = temp_dir(name);
    let config_path = dir.join("gatekit.yaml");
    std::fs::write(&config_path, config).unwrap();
    let resources = dir.join("manifests");
    std::fs::create_dir_all(&resources).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatekit"))
        .args([
            "run",
            "--resources",
            resources.to_str().unwrap(),
            "--config",
        ])
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut err = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        err.push_str(&line);
        err.push('\n');
        if line.contains(until) {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for line in lines {
        err.push_str(&line.unwrap());
        err.push('\n');
    }
    (child.wait().unwrap().code(), err)
}

#[test]
#[cfg(unix)]
fn run_serves_then_stops_on_sigterm_with_exit_0() {
    let (code, err) = run_until_line(
        "run-sigterm",
        "admin: { address: '127.0.0.1:0' }\n",
        "configuration served",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("SIGTERM received"), "{err}");
    assert!(err.contains("drained"), "{err}");
}

#[test]
#[cfg(unix)]
fn json_logs_report_the_open_files_limits() {
    let dir = temp_dir("json-logs");
    let config = dir.join("gatekit.yaml");
    std::fs::write(
        &config,
        "admin: { address: '127.0.0.1:0' }\nlog: { format: json }\n",
    )
    .unwrap();
    let (code, err) = run_until_line(
        "json-logs-run",
        &std::fs::read_to_string(&config).unwrap(),
        "configuration served",
    );
    assert_eq!(code, Some(0), "{err}");
    let events: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let limits = events
        .iter()
        .find(|e| e["fields"]["message"] == "open files limit")
        .unwrap_or_else(|| panic!("no open files line in\n{err}"));
    let soft = limits["fields"]["soft"].as_u64().unwrap();
    let hard = limits["fields"]["hard"].as_u64().unwrap();
    assert!(limits["fields"]["soft_before"].as_u64().unwrap() <= soft);
    // An unlimited hard limit cannot be the soft one (the kernel caps descriptors).
    if hard != u64::MAX {
        assert_eq!(soft, hard, "soft limit raised to the hard limit");
    }
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "admin API listening"),
        "{err}"
    );
}

#[test]
fn validate_features_lists_every_feature_without_a_directory() {
    let out = gatekit(&["validate", "--features"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for f in gatekit_k8s::features::FEATURES {
        assert!(text.contains(f.name()), "{} not in\n{text}", f.name());
        for t in f.tests() {
            assert!(text.contains(t), "{t} not in\n{text}");
        }
    }
    assert!(text.contains("HTTPRouteCORS"));
    assert!(text.contains("unsupported"));
    // Without --features a directory is still required; with it, none is allowed.
    assert_eq!(gatekit(&["validate"]).status.code(), Some(2));
    assert_eq!(
        gatekit(&["validate", "--features", "some-dir"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn validate_honours_the_gateway_class_of_config() {
    let dir = temp_dir("validate-class");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("gw.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: edge-gw }\nspec:\n  gatewayClassName: edge\n  listeners: [{ name: http, port: 8080, protocol: HTTP }]\n",
    )
    .unwrap();
    let config = dir.join("gatekit.yaml");
    std::fs::write(&config, "gatewayClassName: edge\n").unwrap();
    // Without --config the Gateway is of another class: not ours, not checked.
    let out = gatekit(&["validate", manifests.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        !text.contains("✓ Gateway default/edge-gw")
            && text.contains("skipped: Gateway default/edge-gw: gatewayClassName edge")
            && text.contains("--config"),
        "{text}"
    );
    let out = gatekit(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
        manifests.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("✓ Gateway default/edge-gw")
            && text.contains("Accepted=True")
            && !text.contains("skipped"),
        "{text}"
    );
    // A bad settings file is reported, not ignored.
    std::fs::write(&config, "gatewayClassNam: edge\n").unwrap();
    let out = gatekit(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
        manifests.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gatewayClassNam"), "{}", stderr(&out));
}

/// A running `gatekit` whose chosen output is read line by line on a thread.
#[cfg(unix)]
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

#[cfg(unix)]
impl Running {
    /// Spawns `gatekit args`, reading stdout (or stderr) lines; the other stream is
    /// discarded.
    fn spawn(args: &[&str], read_stderr: bool) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatekit"));
        cmd.args(args).env("RUST_LOG", "info");
        if read_stderr {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        let out: Box<dyn std::io::Read + Send> = if read_stderr {
            Box::new(child.stderr.take().unwrap())
        } else {
            Box::new(child.stdout.take().unwrap())
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The output up to and including the first line containing `needle`.
    fn until(&self, needle: &str) -> String {
        let mut text = String::new();
        loop {
            match self.lines.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                    if line.contains(needle) {
                        return text;
                    }
                }
                Err(e) => panic!("{needle:?} not seen ({e}) in\n{text}"),
            }
        }
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code()
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
fn http_get(port: u16, path: &str, header: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: demo\r\n{extra}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap();
    (status, body)
}

#[test]
#[cfg(unix)]
fn demo_takes_its_ports_and_prints_the_next_step() {
    let (port, admin_port) = (free_port(), free_port());
    let demo = Running::spawn(
        &[
            "demo",
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin_port.to_string(),
        ],
        false,
    );
    let text = demo.until("Ctrl-C to stop.");
    for needle in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{admin_port}/config"),
        "gatekit demo --write".to_owned(),
        "gatekit run --resources".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in\n{text}");
    }
    assert_eq!(
        http_get(admin_port, "/readyz", None),
        (200, "ready\n".into())
    );
    let (status, body) = http_get(port, "/", None);
    assert_eq!(status, 200);
    assert!(
        ["blue\n", "green\n", "canary\n"].contains(&body.as_str()),
        "{body}"
    );
    assert_eq!(
        http_get(port, "/", Some("x-canary: true")),
        (200, "canary\n".into())
    );
    assert_eq!(demo.stop(), Some(0));
}

#[test]
#[cfg(unix)]
fn demo_write_gives_manifests_that_run_serves_the_same() {
    let dir = temp_dir("demo-write");
    let manifests = dir.join("manifests");
    let port = free_port();
    let backends = Running::spawn(
        &[
            "demo",
            "--write",
            manifests.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ],
        false,
    );
    let text = backends.until("Ctrl-C to stop the backends.");
    assert!(
        text.contains(&format!("gatekit run --resources {}", manifests.display())),
        "{text}"
    );
    for file in ["gateway.yaml", "blue.yaml", "green.yaml", "canary.yaml"] {
        assert!(manifests.join(file).is_file(), "{file} not written");
    }
    // Nothing serves the gateway port until `gatekit run` does.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    let config = dir.join("gatekit.yaml");
    std::fs::write(&config, "admin: { address: '127.0.0.1:0' }\n").unwrap();
    let run = Running::spawn(
        &[
            "run",
            "--resources",
            manifests.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        true,
    );
    run.until("configuration served");
    assert_eq!(
        http_get(port, "/", Some("x-canary: true")),
        (200, "canary\n".into())
    );
    let (status, body) = http_get(port, "/", None);
    assert_eq!(status, 200);
    assert!(
        ["blue\n", "green\n", "canary\n"].contains(&body.as_str()),
        "{body}"
    );
    assert_eq!(run.stop(), Some(0));
    assert_eq!(backends.stop(), Some(0));
}

#[test]
#[cfg(unix)]
fn run_serves_probes_alone_on_the_probe_address() {
    let dir = temp_dir("probe-addr");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let config = dir.join("gatekit.yaml");
    std::fs::write(&config, "admin: { address: '127.0.0.1:0' }\n").unwrap();
    let probe_port = free_port();
    let run = Running::spawn(
        &[
            "run",
            "--resources",
            manifests.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--probe-addr",
            &format!("127.0.0.1:{probe_port}"),
        ],
        true,
    );
    let log = run.until("configuration served");
    assert!(log.contains("probe API listening"), "{log}");
    assert_eq!(
        http_get(probe_port, "/readyz", None),
        (200, "ready\n".into())
    );
    assert_eq!(http_get(probe_port, "/config", None).0, 404);
    assert_eq!(run.stop(), Some(0));
}
