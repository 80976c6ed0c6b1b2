//! `meterd status`: backlog, oldest pending record, last upload, last error, records past
//! their deadline, unbillable usage, carried usage that can never be billed, records a late
//! release or freeze contradicts (flagged), package quotas and over-quota usage, the
//! conservation audit, and the health checks the store can decide (the daemon's
//! `/v1/status` and `/readyz` add its live ones), and the store: backend, this node, the
//! sealer lease and the nodes seen on a shared PostgreSQL store ([`crate::status::StoreView`]).
//!
//! `--check` is for scripts and probes: it prints what needs a person (see
//! [`crate::health::attention`]) and exits 1 when anything does, 0 when nothing does, 3 when
//! conservation fails (as without `--check`). Orphaned notices (their receiver was removed
//! from the config) are shown, like `/metrics` shows them, but do not fail the check (see
//! [`crate::status::Status::notifications_orphaned`] for why).

use super::{now_or, Ctx, Failure, ListFormat};
use crate::model::Timestamp;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Judge deadlines against this instant.
    #[arg(long, value_parser = super::timestamp)]
    now: Option<Timestamp>,
    /// Exit 1 when something needs a person (past deadline, rejected/expired records, failed
    /// last upload, conservation failing, a plan missing), after printing what.
    #[arg(long)]
    check: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = now_or(args.now);
    let mut store = ctx.store()?;
    let mut s = crate::status::status(&mut store, &ctx.cfg, now, true)?;
    s.store = Some(crate::status::store_view(&mut store, &ctx.node, None, ctx.cfg.store.lease.0)?);
    if args.format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        if let Some(w) = &s.timezone_warning {
            println!("WARNING             {w}");
        }
        if let Some(v) = &s.store {
            println!("store               {} (this node: {})", v.backend, v.node);
            println!("sealer lease        {}", v.lease_line());
            if v.backend != "sqlite" {
                let nodes: Vec<String> =
                    v.nodes_seen.iter().map(|n| format!("{} ({}, last seen {})", n.name, n.version, n.last_seen)).collect();
                println!("nodes seen          {}", if nodes.is_empty() { "-".to_string() } else { nodes.join(", ") });
            }
        }
        println!("instances           {}", s.instances);
        println!("events stored       {}", s.events);
        let records = s.records.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        println!("records             {}", if records.is_empty() { "-" } else { &records });
        println!("frozen              {}", if s.frozen.is_empty() { "-".to_string() } else { s.frozen.join(", ") });
        println!("waiting for upload  {}", s.backlog);
        println!("oldest waiting      {}", s.oldest_pending.map(|t| t.to_string()).unwrap_or_else(|| "-".into()));
        println!("past deadline       {}", s.past_deadline);
        println!("last seal           {}", s.last_seal.map_or_else(|| "-".to_string(), |t| t.to_string()));
        println!("last upload         {}", opt(&s.last_successful_upload));
        println!("last error          {}", opt(&s.last_error));
        for (inst, n) in &s.late_unbilled {
            println!("late, unbilled      {inst}: {n} event(s) billed nowhere: they arrived after their window was sealed, or after a release reported late (max/latest/unique_count plans)");
        }
        for (inst, c) in &s.late_unbilled_change {
            println!("late, unbilled      {inst}: {c} unit·h — what events that arrived after their window was sealed would have changed in sealed windows (weighted_sum: they bill only the windows not sealed yet)");
        }
        for (inst, d) in &s.rounding_dropped {
            println!("rounding dropped    {inst}: {d} (max/latest/unique_count values are floored to 4 decimals, not carried)");
        }
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
        println!("unsealed windows    {} ({} past deadline)", s.unsealed_windows, s.unsealed_past_deadline);
        for (inst, plan) in &s.missing_plans {
            println!("plan missing        {inst}: plan {plan:?} is not in the config");
        }
        for (receiver, n) in &s.notifications_orphaned {
            println!(
                "notices orphaned    {receiver}: {n} not sent — receiver {receiver:?} is no longer configured; add a [[notify]] named {receiver:?} again to deliver them (not a --check failure)"
            );
        }
        for c in &s.checks {
            println!("check {:<13} {} {}", c.name, if c.ok { "ok  " } else { "FAIL" }, c.detail);
        }
        match &s.conservation_violations {
            Some(v) if v.is_empty() => println!("conservation        ok (every acknowledged unit is accounted for once)"),
            Some(v) => println!("conservation        VIOLATED for {v:?}"),
            None => {}
        }
        for (plan, c) in &s.audit_checks {
            // The plan goes in the value column: plan names are free text and may be long.
            println!("audit               {plan}: {} ({}): {}", if c.holds { "holds" } else { "VIOLATED" }, c.aggregation, c.check);
        }
    }
    let broken = s.conservation_violations.as_ref().is_some_and(|v| !v.is_empty());
    if broken {
        return Ok(3);
    }
    if args.check {
        let needs = crate::health::attention(&s);
        for n in &needs {
            eprintln!("meterd status --check: {n}");
        }
        return Ok(u8::from(!needs.is_empty()));
    }
    Ok(0)
}
