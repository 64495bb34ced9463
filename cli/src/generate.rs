//! Man pages and shell completions, generated from the same clap definitions that
//! parse the command line, so they cannot drift from it.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;

use crate::args::{Cli, Generate};

pub fn generate(what: &Generate) -> io::Result<()> {
    match what {
        Generate::Man { dir } => man_pages(dir),
        Generate::Completions { shell } => {
            // clap_complete panics when its writer fails: it writes into memory, and
            // the script goes out here, where a closed pipe can be told apart.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "keepalive", &mut script);
            quiet_on_broken_pipe(io::stdout().lock().write_all(&script))
        }
    }
}

/// A reader that stops early (`| head`) is not a failure: the rest goes unwritten.
fn quiet_on_broken_pipe(written: io::Result<()>) -> io::Result<()> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// keepalive.1, plus keepalive-inspect.1 and keepalive-apply.1 for the subcommands.
fn man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    clap_mangen::generate_to(command, dir)?;
    // The hidden generator is for the installer only: no pages of its own.
    for page in std::fs::read_dir(dir)? {
        let path = page?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("keepalive-generate") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
