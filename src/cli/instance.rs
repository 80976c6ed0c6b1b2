//! `meterd instance add|release|list`.

use super::{time_arg, Ctx, Failure};
use crate::model::Timestamp;
use crate::store::instances;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Register an instance with its plan and start time.
    Add {
        id: String,
        #[arg(long)]
        plan: String,
        /// RFC 3339 start time of the subscription.
        #[arg(long)]
        start: String,
    },
    /// Record the time an instance was released.
    Release {
        id: String,
        #[arg(long)]
        at: String,
    },
    /// List instances.
    List {
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

pub fn run(ctx: &Ctx, cmd: &Cmd) -> Result<u8, Failure> {
    let mut store = ctx.store()?;
    match cmd {
        Cmd::Add { id, plan, start } => {
            crate::collector::parse::valid_instance_id(id).map_err(Failure::usage)?;
            if ctx.cfg.plan(plan).is_none() {
                let known: Vec<_> = ctx.cfg.plans.keys().cloned().collect();
                return Err(Failure::usage(format!("plan {plan:?} is not in the config; known plans: {known:?}")));
            }
            let start = time_arg("--start", start)?;
            let row = store.write(|tx| instances::add(tx, id, plan, start, Timestamp::now()))?;
            println!("instance {} registered: plan {}, start {}", row.instance_id, row.plan, row.start);
        }
        Cmd::Release { id, at } => {
            let at = time_arg("--at", at)?;
            let row = store.write(|tx| instances::release(tx, id, at))?;
            println!("instance {} released at {}", row.instance_id, at);
            let _ = row;
        }
        Cmd::List { format } => {
            let rows = store.read(|tx| instances::list(tx))?;
            if format == "json" {
                let v: Vec<_> = rows.iter().map(instance_json).collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("{:<40} {:<12} {:<22} {:<22}", "INSTANCE", "PLAN", "START", "RELEASE");
                for r in rows {
                    let rel = r.release.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                    println!("{:<40} {:<12} {:<22} {:<22}", r.instance_id, r.plan, r.start.to_string(), rel);
                }
            }
        }
    }
    Ok(0)
}

/// The JSON form of an instance used by the CLI and HTTP API.
pub fn instance_json(r: &crate::store::InstanceRow) -> serde_json::Value {
    serde_json::json!({
        "instance_id": r.instance_id,
        "plan": r.plan,
        "start": r.start,
        "release": r.release,
        "sealed_until": crate::model::Timestamp::from_secs(r.sealed_until),
    })
}
