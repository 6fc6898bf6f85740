//! `vibemon-bench`: parse the options, run the parts, print the table.

use clap::Parser;
use vibemon_bench::Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Options::parse();
    let report = vibemon_bench::run(&opts).await?;
    println!("{}", report.markdown());
    eprintln!("results in {}", opts.out.display());
    Ok(())
}
