//! scripts/install.sh into a temporary DESTDIR, the installed command run from there;
//! and the examples' settings run for real, so that they say what they do.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use cli::{Held, clean, keepalive_command, text};
use serde_json::Value;
use support::{TempDir, library, probe, root};

/// What the probe reads for one tcp4 socket: [keepalive, idle, intvl, cnt, user_timeout].
fn probe_tcp4(mut command: Command) -> Vec<String> {
    let output = command.output().expect("the command starts");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}: {}{}",
        output.status,
        stdout,
        text(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kind=tcp4 "))
        .expect("a tcp4 line");
    ["keepalive=", "idle=", "intvl=", "cnt=", "user_timeout="]
        .iter()
        .map(|key| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .expect(key)
                .to_string()
        })
        .collect()
}

#[test]
fn the_installed_command_finds_the_installed_library() {
    let dest = TempDir::new("destdir");
    let output = Command::new(root().join("scripts/install.sh"))
        .env("DESTDIR", &dest.0)
        .env("PREFIX", "/usr")
        .output()
        .expect("install.sh runs");
    assert!(
        output.status.success(),
        "install.sh failed: {}",
        text(&output.stderr)
    );
    let prefix = dest.0.join("usr");

    // The command is the static build: no program interpreter, no shared library, so
    // that it runs in any image (tests/userland.rs runs it in other Debian releases).
    let command = prefix.join("bin/keepalive");
    let headers = Command::new("readelf")
        .args(["-l", "-d"])
        .arg(&command)
        .output()
        .expect("readelf (binutils)");
    let headers = text(&headers.stdout);
    assert!(
        !headers.contains("INTERP") && !headers.contains("(NEEDED)"),
        "{} is not statically linked:\n{headers}",
        command.display()
    );

    let soname = std::fs::read_link(prefix.join("lib/libkeepalive.so.0")).expect("the soname link");
    assert_eq!(soname, Path::new("libkeepalive.so"));
    let man = std::fs::read_to_string(prefix.join("share/man/man1/keepalive.1")).unwrap();
    assert!(
        man.contains(".TH keepalive 1") && man.contains("\\-\\-idle"),
        "{man}"
    );
    assert!(prefix.join("share/man/man1/keepalive-inspect.1").exists());
    assert!(prefix.join("share/man/man1/keepalive-apply.1").exists());
    for completion in [
        "share/bash-completion/completions/keepalive",
        "share/zsh/site-functions/_keepalive",
        "share/fish/vendor_completions.d/keepalive.fish",
    ] {
        let script = std::fs::read_to_string(prefix.join(completion)).unwrap();
        assert!(
            script.contains("inspect") && script.contains("user-timeout"),
            "{completion}"
        );
    }

    let installed = prefix.join("bin/keepalive");
    let mut command = clean(&installed);
    command
        .args(["--idle", "9", "--interval", "4", "--count", "2", "--"])
        .arg(probe())
        .arg("tcp4");
    assert_eq!(probe_tcp4(command)[..4], ["1", "9", "4", "2"]);

    let mut held = clean(probe());
    held.args(["--hold", "tcp4"]);
    let (held, _) = Held::start(held);
    let inspect = clean(&installed)
        .args(["inspect", "--json", &held.pid().to_string()])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let parsed: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(parsed[0]["sockets"].as_array().map(Vec::len), Some(1));
}

fn example(path: &str) -> String {
    std::fs::read_to_string(root().join("examples").join(path)).expect(path)
}

/// The example's variables, with LD_PRELOAD pointed at the library just built.
fn run_probe_with(env: &[(String, String)]) -> Vec<String> {
    let mut command = clean(probe());
    command.arg("tcp4");
    for (name, value) in env {
        let value = if name == "LD_PRELOAD" {
            library().display().to_string()
        } else {
            value.clone()
        };
        command.env(name, value);
    }
    probe_tcp4(command)
}

const SIXTY_TEN_FIVE_AUTO: [&str; 5] = ["1", "60", "10", "5", "110000"];

#[test]
fn the_systemd_drop_in_sets_what_it_says() {
    let env: Vec<(String, String)> = example("systemd/keepalive.conf")
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(env.iter().any(|(k, _)| k == "LD_PRELOAD"));
    assert_eq!(run_probe_with(&env), SIXTY_TEN_FIVE_AUTO);
}

#[test]
fn the_kubernetes_pod_sets_what_it_says() {
    let text = example("kubernetes/pod.yaml");
    let mut env = Vec::new();
    let mut lines = text.lines().map(str::trim).skip_while(|l| *l != "env:");
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("- name: ") {
            let value = lines
                .next()
                .and_then(|l| l.strip_prefix("value: "))
                .expect("a value line");
            env.push((name.to_string(), value.trim_matches('"').to_string()));
        }
    }
    assert!(env.iter().any(|(k, _)| k == "LD_PRELOAD"));
    assert_eq!(run_probe_with(&env), SIXTY_TEN_FIVE_AUTO);
}

#[test]
fn the_dockerfile_entrypoint_runs_the_command_under_the_library() {
    let dockerfile = example("docker/Dockerfile");
    let entrypoint = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let argv: Vec<String> =
        serde_json::from_str(entrypoint).expect("ENTRYPOINT in exec (JSON) form");
    assert_eq!(argv[0], "/usr/local/bin/keepalive");
    // The two files it copies are the ones scripts/build.sh makes, put where the
    // entrypoint's command looks for the library (../lib).
    let copies: Vec<(&str, &str)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY --from=build /src/"))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(
        copies,
        [
            (
                "target/release/libkeepalive.so",
                "/usr/local/lib/libkeepalive.so"
            ),
            ("target/static/keepalive", "/usr/local/bin/keepalive"),
        ]
    );
    let built = Command::new(root().join("scripts/build.sh"))
        .output()
        .expect("build.sh runs");
    assert!(built.status.success(), "{}", text(&built.stderr));
    for (source, _) in &copies {
        assert!(
            text(&built.stdout).contains(&*root().join(source).to_string_lossy()),
            "build.sh does not make {source}: {}",
            text(&built.stdout)
        );
    }
    let mut command = keepalive_command(&[]);
    command.args(argv[1..].iter()).arg(probe()).arg("tcp4");
    assert_eq!(probe_tcp4(command)[..4], SIXTY_TEN_FIVE_AUTO[..4]);
}
