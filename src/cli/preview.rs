//! `meterd preview`: charges per instance and window, as a table, JSON, CSV or an HTML page.
//! An inverted range (`--from` after `--to`) is bad usage (exit 2); any other range answers.
//! Stop-before-excess rows show the units `drawn` from their package (column DRAWN / `drawn`);
//! CSV also has `relate_pkg_instance` and, for pay-per-use packages, `covered`.

use super::{time_arg, Ctx, Failure};
use crate::preview::{Preview, PreviewQuery};
use std::fmt::Write;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this instance.
    #[arg(long)]
    instance: Option<String>,
    /// Windows starting at or after this time.
    #[arg(long)]
    from: Option<String>,
    /// Windows starting before this time.
    #[arg(long)]
    to: Option<String>,
    /// The time open `weighted_sum` windows are integrated up to (default: the clock); other
    /// plans show the store as it is.
    #[arg(long)]
    now: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "html"])]
    format: String,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let from = args.from.as_deref().map(|s| time_arg("--from", s)).transpose()?;
    let to = args.to.as_deref().map(|s| time_arg("--to", s)).transpose()?;
    let q = PreviewQuery::new(args.instance.clone(), from, to)
        .map_err(|e| Failure::usage(format!("--from/--to: {e}")))?
        .at(super::now_or(&args.now)?);
    let mut store = ctx.store()?;
    let p = crate::preview::preview(&mut store, &ctx.cfg, &q)?;
    let text = match args.format.as_str() {
        "json" => serde_json::to_string_pretty(&p).unwrap_or_default(),
        "csv" => csv(&p),
        "html" => crate::preview::html::render(&p),
        _ => crate::views::preview_table(&p),
    };
    println!("{text}");
    Ok(0)
}

fn csv(p: &Preview) -> String {
    let mut s =
        String::from("instance_id,plan,begin_time,end_time,state,usage,charge,charge_2dp,metering_sn,relate_pkg_instance,drawn,covered\n");
    for r in &p.rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            r.instance_id,
            r.plan,
            r.begin_time,
            r.end_time,
            r.state,
            r.usage,
            r.charge,
            r.charge_2dp,
            r.metering_sn.as_deref().unwrap_or(""),
            r.relate_pkg_instance.as_deref().unwrap_or(""),
            r.drawn.map(|d| d.to_string()).unwrap_or_default(),
            r.covered.map(|d| d.to_string()).unwrap_or_default()
        );
    }
    s
}
