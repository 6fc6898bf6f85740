//! `vibemon-bench`: parse the options, run the parts, print the table (or,
//! with `--serve-trivial`, be the trivial endpoint of the ingest part).

use clap::Parser;
use vibemon_bench::Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Options::parse();
    if let Some(addr) = opts.serve_trivial {
        return vibemon_bench::trivial::serve(addr).await;
    }
    let report = vibemon_bench::run(&opts).await?;
    println!("{}", report.markdown());
    eprintln!("results in {}", opts.out.display());
    Ok(())
}
