//! The agent's examples are valid where users put them, checked without a cluster and
//! without a running systemd:
//! - every manifest in examples/kubernetes against the Kubernetes API's schemas with
//!   kubernetes-validate: strict (an unknown or misplaced field fails), offline (the
//!   schemas it bundles), for the oldest and the newest Kubernetes version the
//!   examples are written for;
//! - what no schema sees (tests/support/examples.py): the DaemonSet's ConfigMap holds
//!   a complete agent configuration, mounted where the agent's --config reads it,
//!   listening on the port the probes and the scrape annotations name; and
//!   /etc/keepalive/agent.toml, as the package ships it, attaches nothing and its
//!   commented example is valid once uncommented;
//! - the agent's systemd unit, with `systemd-analyze verify`.
//!
//! scripts/test.sh installs kubernetes-validate (pinned, in a virtual environment
//! under /var/cache/libkeepalive) and systemd. Each checker is also shown a broken
//! copy, which it must refuse: a checker that accepts anything fails here.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{TempDir, require, root};

/// Where scripts/test.sh installs kubernetes-validate.
const VALIDATOR_ENV: &str = "/var/cache/libkeepalive/kubernetes-validate";
/// 1.30 is the first with securityContext.appArmorProfile, which the DaemonSet uses;
/// 1.37 the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Both output streams, for messages.
fn said(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The kubernetes-validate command (test.sh's, or one on the PATH), with the Python
/// it runs under (which has PyYAML, for examples.py), or None after saying why not.
fn validator() -> Option<(PathBuf, PathBuf)> {
    let installed = Path::new(VALIDATOR_ENV).join("bin");
    let found = if installed.join("kubernetes-validate").is_file() {
        Some((
            installed.join("kubernetes-validate"),
            installed.join("python3"),
        ))
    } else {
        let runs = Command::new("kubernetes-validate")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        runs.then(|| ("kubernetes-validate".into(), support::python3()))
    };
    let why = format!(
        "kubernetes-validate is neither in {VALIDATOR_ENV} nor on the PATH (scripts/test.sh \
         installs it as root)"
    );
    require(found.is_some(), &why).then_some(found).flatten()
}

/// Every manifest of examples/kubernetes, in name order.
fn manifests() -> Vec<PathBuf> {
    let dir = root().join("examples/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/kubernetes")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("daemonset.yaml")),
        "no daemonset.yaml among {files:?}"
    );
    files
}

/// kubernetes-validate, strict, against `version`'s schemas.
fn validate(validator: &Path, version: &str, files: &[PathBuf]) -> Output {
    Command::new(validator)
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("kubernetes-validate runs")
}

#[test]
fn every_kubernetes_example_passes_the_api_schemas_strictly() {
    let Some((validator, _)) = validator() else {
        return;
    };
    let files = manifests();
    // One resource per top-level apiVersion line.
    let resources: usize = files
        .iter()
        .map(|f| {
            let yaml = std::fs::read_to_string(f).expect("a manifest");
            yaml.lines()
                .filter(|l| l.starts_with("apiVersion:"))
                .count()
        })
        .sum();
    for version in KUBERNETES_VERSIONS {
        let output = validate(&validator, version, &files);
        let report = said(&output);
        let passed = report.lines().filter(|l| l.contains(" passed ")).count();
        assert!(
            output.status.success()
                && passed == resources
                && report.lines().all(|l| l.starts_with("INFO ")),
            "Kubernetes {version}: {passed} of {resources} resources passed:\n{report}"
        );
    }
}

#[test]
fn the_validator_refuses_a_misplaced_field() {
    let Some((validator, _)) = validator() else {
        return;
    };
    let dir = TempDir::new("manifests-misplaced");
    let yaml = std::fs::read_to_string(root().join("examples/kubernetes/daemonset.yaml"))
        .expect("the DaemonSet example");
    let broken = dir.0.join("daemonset.yaml");
    std::fs::write(&broken, yaml.replace("securityContext:", "securityContxt:"))
        .expect("write the broken copy");
    let output = validate(&validator, KUBERNETES_VERSIONS[1], &[broken]);
    assert!(
        !output.status.success() && said(&output).contains("'securityContxt' was unexpected"),
        "a misplaced field passed:\n{}",
        said(&output)
    );
}

/// tests/support/examples.py WHAT FILE, under `python`.
fn examples_py(python: &Path, what: &str, file: &Path) -> Output {
    Command::new(python)
        .arg(root().join("tests/support/examples.py"))
        .args([what.as_ref(), file.as_os_str()])
        .output()
        .expect("python3 runs")
}

#[test]
fn the_daemonsets_agent_configuration_is_complete_and_where_the_agent_reads_it() {
    let Some((_, python)) = validator() else {
        return;
    };
    let path = root().join("examples/kubernetes/daemonset.yaml");
    let output = examples_py(&python, "daemonset", &path);
    assert!(output.status.success(), "{}", said(&output));

    // A copy whose ConfigMap lacks a key, scraped on another port than it listens on.
    let dir = TempDir::new("manifests-daemonset");
    let yaml = std::fs::read_to_string(&path).expect("the DaemonSet example");
    let broken = yaml.replace("    existing = false\n", "").replace(
        "prometheus.io/port: \"9977\"",
        "prometheus.io/port: \"9978\"",
    );
    let copy = dir.0.join("daemonset.yaml");
    std::fs::write(&copy, broken).expect("write the broken copy");
    let output = examples_py(&python, "daemonset", &copy);
    let report = said(&output);
    assert!(
        !output.status.success()
            && report.contains("missing ['existing']")
            && report.contains("prometheus.io/port"),
        "the broken copy passed:\n{report}"
    );
}

#[test]
fn the_packaged_agent_configuration_attaches_nothing_and_its_example_is_valid() {
    let python = support::python3();
    let path = root().join("examples/agent.toml");
    let output = examples_py(&python, "conffile", &path);
    assert!(output.status.success(), "{}", said(&output));

    let dir = TempDir::new("manifests-conffile");
    let toml = std::fs::read_to_string(&path).expect("examples/agent.toml");
    let copy = dir.0.join("agent.toml");
    std::fs::write(&copy, toml.replace("#mode = ", "#mod = ")).expect("write the copy");
    let output = examples_py(&python, "conffile", &copy);
    assert!(
        !output.status.success() && said(&output).contains("unknown ['mod']"),
        "a misspelt key passed:\n{}",
        said(&output)
    );
}

/// A root for `systemd-analyze verify --root`: the system's units (the unit's default
/// dependencies), `unit` in etc/systemd/system, and the programs it runs where it
/// runs them, so that verify checks them too.
fn unit_root(dir: &Path, unit: &str, text: &str) {
    let units = Path::new("/usr/lib/systemd/system");
    std::fs::create_dir_all(dir.join("usr/lib/systemd")).expect("mkdir");
    let status = Command::new("cp")
        .arg("-r")
        .arg(units)
        .arg(dir.join("usr/lib/systemd/"))
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying {} failed", units.display());
    for (program, at) in [
        (support::keepalive_release(), "usr/bin/keepalive"),
        ("/bin/kill".into(), "bin/kill"),
    ] {
        let to = dir.join(at);
        std::fs::create_dir_all(to.parent().expect("a directory")).expect("mkdir");
        std::fs::copy(&program, &to).expect("copy the program");
    }
    let etc = dir.join("etc/systemd/system");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::write(etc.join(unit), text).expect("write the unit");
}

/// `systemd-analyze verify` of `text` as `unit`: its exit status and what it said
/// (nothing, for a clean unit; unknown keys are only warned about).
fn verify(dir: &Path, unit: &str, text: &str) -> (bool, String) {
    unit_root(dir, unit, text);
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--root"])
        .arg(dir)
        .arg(unit)
        .output()
        .expect("systemd-analyze runs");
    (output.status.success(), said(&output))
}

#[test]
fn the_agent_unit_passes_systemd_analyze_verify() {
    let installed = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(
        installed,
        "systemd-analyze is not installed (package systemd)",
    ) {
        return;
    }
    let unit = "keepalive-agent.service";
    let text = std::fs::read_to_string(root().join("examples/systemd").join(unit))
        .expect("the agent's unit");
    // What the package and the README rely on.
    for line in [
        "Type=simple",
        "ExecStart=/usr/bin/keepalive agent --config /etc/keepalive/agent.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ReadWritePaths=/sys/fs/bpf",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in {unit}"
        );
    }
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        cargo.contains("dest = \"etc/keepalive/agent.toml\"")
            && cargo.contains("unit-name = \"keepalive-agent\", enable = false, start = false"),
        "Cargo.toml does not ship the unit, unenabled, with the configuration it reads"
    );

    let dir = TempDir::new("manifests-unit");
    let (ok, report) = verify(&dir.0, unit, &text);
    assert!(ok && report.is_empty(), "systemd-analyze verify:\n{report}");

    let broken = TempDir::new("manifests-unit-broken");
    let (_, report) = verify(
        &broken.0,
        unit,
        &text.replace("ProtectHome=", "ProtectHom="),
    );
    assert!(
        report.contains("Unknown key 'ProtectHom'"),
        "a misspelt key passed: {report:?}"
    );
}
