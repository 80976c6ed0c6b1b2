//! `meterd rejected` lists the rejected log; `meterd requeue SN` sends a record again.

use super::{Ctx, Failure, ListFormat};
use crate::model::Timestamp;
use crate::store::dead_letters;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

#[derive(Debug, clap::Args)]
pub struct RequeueArgs {
    /// The record's metering_sn (see `meterd rejected`).
    metering_sn: String,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let rows = ctx.store()?.read(dead_letters::list)?;
    if args.format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no rejected records");
    }
    for r in rows {
        let at = Timestamp(r.at_ns);
        let requeued = if r.requeued { " (requeued)" } else { "" };
        println!("{} {} {} at {at}{requeued}\n  {}\n  sent: {}", r.metering_sn, r.instance_id, r.code, r.message, r.body);
    }
    Ok(0)
}

pub fn requeue(ctx: &Ctx, args: &RequeueArgs) -> Result<u8, Failure> {
    ctx.store()?.write(|tx| dead_letters::requeue(tx, &args.metering_sn, Timestamp::now().0))?;
    println!("record {} is pending again; `meterd upload` sends it with the same serial and bytes", args.metering_sn);
    Ok(0)
}
