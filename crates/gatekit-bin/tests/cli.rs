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
        "/readyz",
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
        "SIGTERM",
    ] {
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
    let out = gatekit(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--resources"), "{}", stderr(&out));
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
fn commands_needing_the_translation_say_so_and_exit_2() {
    let dir = temp_dir("not-wired");
    let config = dir.join("gatekit.yaml");
    // Admin on an ephemeral port, so the process really starts and stops.
    std::fs::write(&config, "admin: { address: '127.0.0.1:0' }\n").unwrap();
    let dir_s = dir.to_str().unwrap();
    for args in [
        vec![
            "run",
            "--resources",
            dir_s,
            "--config",
            config.to_str().unwrap(),
        ],
        vec!["validate", dir_s],
        vec!["demo"],
    ] {
        let out = gatekit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("not wired"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn json_logs_report_the_open_files_limits() {
    let dir = temp_dir("json-logs");
    let config = dir.join("gatekit.yaml");
    std::fs::write(
        &config,
        "admin: { address: '127.0.0.1:0' }\nlog: { format: json }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatekit"))
        .args(["run", "--resources", dir.to_str().unwrap(), "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "not wired yet");
    let err = stderr(&out);
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
