//! `backplane completions SHELL` and `backplane man`: generated from the
//! same clap definitions the binary parses with, so they never disagree.

use crate::Failure;
use clap::{Args, Command};
use clap_complete::Shell;
use std::{io::Write, path::PathBuf};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write `backplane.1` and one `backplane-<command>.1` per subcommand into
    /// this directory instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` to stdout.
pub fn completions(command: Command, args: CompletionsArgs) -> Result<(), Failure> {
    let mut command = command;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "backplane", &mut script);
    write_stdout(&script)
}

/// Prints the man page, or writes every page into `--out-dir`.
pub fn man(command: Command, args: ManArgs) -> Result<(), Failure> {
    // Built, so each subcommand carries the global options it accepts.
    let mut command = command.version(env!("CARGO_PKG_VERSION"));
    command.build();
    let Some(dir) = args.out_dir else {
        return write_stdout(&render(command)?);
    };
    let mut pages = Vec::new();
    collect_pages(&command, "backplane", &mut pages);
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        backplane_atomic_file::write(&path, &render(page)?)
            .map_err(|e| Failure::Environment(format!("error: cannot write {}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `command` as page `name`, then its visible subcommands as `name-<sub>`, depth first.
fn collect_pages(command: &Command, name: &str, pages: &mut Vec<(String, Command)>) {
    pages.push((name.to_owned(), command.clone().name(name.to_owned())));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        collect_pages(sub, &format!("{name}-{}", sub.get_name()), pages);
    }
}

fn render(command: Command) -> Result<Vec<u8>, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|e| Failure::Environment(format!("error: cannot render the man page: {e}")))?;
    Ok(page)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Environment(format!("error: cannot write to stdout: {e}")))
}
