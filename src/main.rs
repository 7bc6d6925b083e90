use std::process::ExitCode;

use clap::Parser;
use rds_csi::cli::{Cli, Command, CSI_SPEC_VERSION};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "rds-csi {} (CSI spec {CSI_SPEC_VERSION})",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Command::Controller(args) => rds_csi::controller::run(args),
        Command::Node(args) => rds_csi::node::run(args),
        Command::Simulator(args) => rds_csi::simulator::run(args),
        Command::Demo(_) => not_yet("demo", "the deploy and demo issue"),
    }
}

/// Roles whose implementation has not landed say so plainly instead of pretending to run.
fn not_yet(role: &str, lands_with: &str) -> ExitCode {
    eprintln!(
        "rds-csi {role}: not available in this build yet; it lands with {lands_with}. \
         `rds-csi {role} --help` describes what it will do."
    );
    ExitCode::from(3)
}
