use std::process::ExitCode;

use clap::Parser;
use rds_csi::runtime::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("{}", rds_csi::observability::build_info::version_line());
            ExitCode::SUCCESS
        }
        Command::Controller(args) => rds_csi::controller::run(args),
        Command::Node(args) => rds_csi::node::run(args),
        Command::Simulator(args) => rds_csi::simulator::run(args),
        Command::Demo(args) => rds_csi::demo::run(args),
        Command::Doctor(args) => rds_csi::doctor::run(args),
    }
}
