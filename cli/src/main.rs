//! `keepalive`: runs a program under libkeepalive, and inspects or changes the TCP
//! keepalive settings of processes already running.

mod agent;
mod args;
mod cgroup;
mod existing;
mod exit;
mod generate;
mod metrics;
mod policy;
mod procfs;
mod reach;
mod remote;
mod report;
mod run;
mod sockets;
mod supervise;
mod toml_file;

use clap::Parser;

use args::{Action, Cli};

fn main() {
    let cli = Cli::parse_from(args::verbose_after_subcommand(
        std::env::args_os().collect(),
    ));
    // The agent logs what it attaches, updates and detaches: info by default.
    let agent = matches!(cli.action, Some(Action::Agent(_)));
    init_logging(if agent {
        cli.verbose.max(1)
    } else {
        cli.verbose
    });
    let status = match cli.action {
        None if cli.run.cgroup => cgroup::run(&cli.run),
        None => run::run(cli.run),
        Some(Action::Cgroup(action)) => cgroup::act(&action),
        Some(Action::Agent(args)) => agent::run(&args),
        Some(Action::Inspect(args)) => report::inspect(&args),
        Some(Action::Apply(args)) => report::apply(&args),
        Some(Action::Generate { what }) => match generate::generate(&what) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("keepalive: {error}");
                1
            }
        },
    };
    std::process::exit(status);
}

/// Warnings by default, -v for info, -vv for debug; RUST_LOG is not read, so that a
/// variable meant for the wrapped program cannot change this command's output.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .format_target(false)
        .init();
}
