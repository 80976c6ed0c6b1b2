//! `meterd package add|list`: prepaid packages of pay-per-use instances (design §4.2).

use super::{now_or, Ctx, Failure, ListFormat};
use crate::model::Timestamp;
use crate::store::instances;

#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Register a package bought for an instance (its plan needs `package = "stop"|"payg"`).
    Add {
        /// The instance the package is for (its `instance_id`, registered before).
        instance: String,
        /// The package's id from the cloud store's order, unique across instances (adding it
        /// again with the same terms changes nothing and says so; with other terms, or for
        /// another instance, it is an error).
        package_id: String,
        /// Quota in the plan's unit: a decimal > 0 with at most 4 decimals.
        #[arg(long)]
        quota: String,
        /// RFC 3339 start of the validity.
        #[arg(long)]
        from: String,
        /// RFC 3339 end of the validity (exclusive).
        #[arg(long)]
        to: String,
        /// When the quota renews: each calendar month or year (in `timezone`) of the validity.
        #[arg(long, default_value = "none", value_parser = ["none", "monthly", "yearly"])]
        reset: String,
    },
    /// Show packages with their use in the current reset period and what is left.
    List {
        /// Only this instance.
        instance: Option<String>,
        /// Show the packages as of this time instead of now: their state and reset period at
        /// T, and only the use by usage with a time before T (recomputed from the events, so
        /// slower). Without it: every use stored so far.
        #[arg(long, value_parser = super::timestamp)]
        now: Option<Timestamp>,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

pub fn run(ctx: &Ctx, cmd: &Cmd) -> Result<u8, Failure> {
    let mut store = ctx.store()?;
    match cmd {
        Cmd::Add { instance, package_id, quota, from, to, reset } => {
            let new = crate::quota::new_package(package_id, quota, from, to, Some(reset)).map_err(Failure::usage)?;
            let r = store.write(|tx| crate::quota::register(tx, &ctx.cfg, instance, &new, Timestamp::now()))?;
            let p = r.package;
            let terms = format!("quota {}, {} to {}, reset {}", p.quota, p.from, p.to, p.reset.as_str());
            if r.new {
                println!("package {} of {instance} registered: {terms}", p.package_id);
            } else {
                println!("package {} of {instance} is already registered with {terms}; nothing changed", p.package_id);
            }
        }
        Cmd::List { instance, now: as_of, format } => {
            let now = now_or(*as_of);
            let views = store.read(|tx| {
                let mut all = instances::list(tx)?;
                if let Some(id) = instance {
                    all.retain(|i| &i.instance_id == id);
                    if all.is_empty() {
                        return Err(instances::unknown(id));
                    }
                }
                let mut out = Vec::new();
                for i in &all {
                    let v = match as_of {
                        Some(t) => crate::quota::view_as_of(tx, &ctx.cfg, i, *t)?,
                        None => crate::quota::view(tx, &ctx.cfg, i, now)?,
                    };
                    if instance.is_some() || v.mode.is_some() || !v.packages.is_empty() {
                        out.push(v);
                    }
                }
                Ok(out)
            })?;
            if *format == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&views).unwrap_or_default());
            } else {
                table(&views);
            }
        }
    }
    Ok(0)
}

fn table(views: &[crate::quota::QuotaView]) {
    println!("{:<36} {:<36} {:<13} {:>14} {:>14} {:>14} {:<8}", "INSTANCE", "PACKAGE", "STATE", "QUOTA", "USED", "REMAINING", "RESET");
    for v in views {
        for p in &v.packages {
            println!(
                "{:<36} {:<36} {:<13} {:>14} {:>14} {:>14} {:<8}",
                v.instance_id,
                p.package_id,
                p.state,
                p.quota.to_string(),
                p.used.to_string(),
                p.remaining.to_string(),
                p.reset.as_str()
            );
        }
        let flag = if v.exhausted { "  QUOTA EXHAUSTED: stop the service" } else { "" };
        println!("{:<36} remaining {}, over_quota {}{flag}", v.instance_id, v.remaining, v.over_quota);
    }
}
