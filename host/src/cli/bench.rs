//! `backplane bench`.

use super::say;
use super::setup;
use crate::{Failure, GlobalArgs};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Nodes in the wide (independent) DAG.
    #[arg(long, default_value_t = 100_000)]
    wide: usize,
    /// Nodes in the dependent chain.
    #[arg(long, default_value_t = 1_000)]
    chain: usize,
    /// Round trips for the bare baseline.
    #[arg(long, default_value_t = 10_000)]
    round_trips: usize,
    /// Nodes in the large-plan memory measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    large: usize,
    /// Repetitions of each measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
}

pub fn bench(global: &GlobalArgs, args: BenchArgs) -> Result<(), Failure> {
    let host = setup(global)?;
    let settings = backplane_host::bench::BenchSettings {
        wide: args.wide,
        chain: args.chain,
        round_trips: args.round_trips,
        large: args.large,
        repeat: args.repeat.max(1),
    };
    let results = backplane_host::bench::run(&host, &settings).map_err(Failure::Invalid)?;
    if args.json {
        super::print_json(&results)
    } else {
        say!("{}", results.to_markdown());
        Ok(())
    }
}
