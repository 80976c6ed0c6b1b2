//! `meterd rejected` lists the rejected log; `meterd requeue SN…` / `meterd requeue --all`
//! puts rejected records back to pending, so the next upload sends them again (same serial,
//! same bytes).

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
    /// The records' metering_sn, one or more (see `meterd rejected`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    metering_sn: Vec<String>,
    /// Every record now rejected by the store (not the expired ones: the store refuses records
    /// older than 21 days, so sending them again cannot succeed).
    #[arg(long)]
    all: bool,
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

/// Requeues each record in its own transaction, so one wrong serial leaves the others
/// requeued; exit 2 when any serial was refused (unknown, or not rejected), naming it.
pub fn requeue(ctx: &Ctx, args: &RequeueArgs) -> Result<u8, Failure> {
    let mut store = ctx.store()?;
    let sns = if args.all {
        // Newest entry first: a record requeued and rejected again has a newer, unrequeued entry.
        let mut seen = std::collections::HashSet::new();
        let rows = store.read(dead_letters::list)?;
        rows.into_iter()
            .filter(|r| seen.insert(r.metering_sn.clone()) && !r.requeued && r.code != "EXPIRED")
            .map(|r| r.metering_sn)
            .collect()
    } else {
        args.metering_sn.clone()
    };
    if sns.is_empty() {
        println!("no rejected records to requeue");
        return Ok(0);
    }
    let mut refused = Vec::new();
    for sn in &sns {
        match store.write(|tx| dead_letters::requeue(tx, sn, Timestamp::now().0)) {
            Ok(()) => println!("record {sn} is pending again"),
            Err(e) if matches!(e, crate::store::StoreError::Invalid(_) | crate::store::StoreError::NotFound(_)) => {
                eprintln!("meterd requeue: {e}");
                refused.push(sn.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let done = sns.len() - refused.len();
    if done > 0 {
        println!("{done} record(s) pending again; `meterd upload` sends them with the same serials and bytes");
    }
    if refused.is_empty() {
        Ok(0)
    } else {
        Err(Failure::usage(format!("{} of {} serial(s) not requeued: {}", refused.len(), sns.len(), refused.join(", "))))
    }
}
