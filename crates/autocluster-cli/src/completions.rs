//! `autocluster completions SHELL` and `autocluster man`: generated from the clap definitions.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::{print_out, Failure};

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "autocluster", &mut out);
    print_out(&String::from_utf8_lossy(&out))
}

/// Prints the manual page as roff: `autocluster(1)`, then one page per command
/// (`autocluster-agent(1)`, ...), which `man -l` shows one after the other.
pub fn man() -> Result<(), Failure> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(Failure::runtime)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("autocluster-{}", sub.get_name());
        let sub = sub.clone().display_name(&name).bin_name(&name);
        out.push(b'\n');
        clap_mangen::Man::new(sub)
            .render(&mut out)
            .map_err(Failure::runtime)?;
    }
    print_out(&String::from_utf8_lossy(&out))
}
