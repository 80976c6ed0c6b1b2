//! `meterd status`: backlog, oldest pending record, last upload, last error, records past
//! their deadline, unbillable usage, carried usage that can never be billed, records a late
//! release or freeze contradicts (flagged), package quotas and over-quota usage, and the
//! conservation audit.

use super::{now_or, Ctx, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Judge deadlines against this instant.
    #[arg(long)]
    now: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = now_or(&args.now)?;
    let s = crate::status::status(&mut ctx.store()?, &ctx.cfg, now, true)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        if let Some(w) = &s.timezone_warning {
            println!("WARNING             {w}");
        }
        println!("instances           {}", s.instances);
        println!("events stored       {}", s.events);
        let records = s.records.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        println!("records             {}", if records.is_empty() { "-" } else { &records });
        println!("frozen              {}", if s.frozen.is_empty() { "-".to_string() } else { s.frozen.join(", ") });
        println!("waiting for upload  {}", s.backlog);
        println!("oldest waiting      {}", s.oldest_pending.map(|t| t.to_string()).unwrap_or_else(|| "-".into()));
        println!("past deadline       {}", s.past_deadline);
        println!("last upload         {}", opt(&s.last_successful_upload));
        println!("last error          {}", opt(&s.last_error));
        for (inst, u) in &s.unbillable {
            println!("unbillable          {inst}: {u}");
        }
        for (inst, c) in &s.stranded_carry {
            println!("stranded carry      {inst}: {c} can never be billed (released and sealed through its release, or its package expired); `meterd seal` moves it to unbillable");
        }
        for q in &s.quota {
            let flag = if q.exhausted { " — QUOTA EXHAUSTED: stop the service" } else { "" };
            println!("quota               {}: remaining {}, over_quota {}{flag}", q.instance_id, q.remaining, q.over_quota);
            for p in &q.packages {
                println!("  package           {} ({}): used {} of {}, remaining {}", p.package_id, p.state, p.used, p.quota, p.remaining);
            }
        }
        for f in &s.flagged_records {
            println!("flagged record      {}: {f}", f.instance_id);
        }
        match &s.conservation_violations {
            Some(v) if v.is_empty() => println!("conservation        ok (every acknowledged unit is accounted for once)"),
            Some(v) => println!("conservation        VIOLATED for {v:?}"),
            None => {}
        }
    }
    let broken = s.conservation_violations.as_ref().is_some_and(|v| !v.is_empty());
    Ok(if broken { 3 } else { 0 })
}
