//! `meterd notifications`: the notification outbox (issue 17), newest first — what was
//! announced to which receiver, whether it was acknowledged, and for those not yet, how many
//! attempts failed, the last error and when the next attempt is due. A table by default,
//! `--format json` for scripts (bodies included there, exactly as sent).
//!
//! A notice whose receiver is no longer in the config is `orphaned` ([`Standing`]): it has no
//! next attempt, and the listing says so and what to do, instead of showing it `failing` with a
//! next attempt in the past. `--pending` lists orphaned notices too (they are not acknowledged).

use super::{Ctx, Failure, ListFormat};
use crate::model::Timestamp;
use crate::notify::Standing;
use crate::store::notify::{self, Notice};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only notifications not acknowledged yet (waiting, failing or orphaned).
    #[arg(long)]
    pending: bool,
    /// How many of the most recent to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

/// One outbox row as shown.
#[derive(Serialize)]
struct Shown<'a> {
    id: &'a str,
    receiver: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    instance_id: Option<&'a str>,
    state: &'a str,
    created: Timestamp,
    /// `delivered`, `pending` (no attempt yet), `failing`, or `orphaned` (its receiver is no
    /// longer configured: never attempted until it is again).
    status: &'static str,
    attempts: i64,
    delivered: Option<Timestamp>,
    last_attempt: Option<Timestamp>,
    last_error: Option<&'a str>,
    next_attempt: Option<Timestamp>,
    body: &'a str,
}

fn shown<'a>(n: &'a Notice, ctx: &Ctx) -> Shown<'a> {
    let configured = ctx.cfg.notify.iter().any(|t| t.name == n.target);
    let standing = Standing::of(n.delivered_ns.is_some(), n.attempts, configured);
    Shown {
        id: &n.id,
        receiver: &n.target,
        kind: &n.kind,
        instance_id: n.instance_id.as_deref(),
        state: &n.state,
        created: Timestamp(n.created_ns),
        status: standing.as_str(),
        attempts: n.attempts,
        delivered: n.delivered_ns.map(Timestamp),
        last_attempt: n.last_attempt_ns.map(Timestamp),
        last_error: n.last_error.as_deref(),
        next_attempt: (matches!(standing, Standing::Failing) && n.next_ns > 0).then_some(Timestamp(n.next_ns)),
        body: &n.body,
    }
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let rows = ctx.store()?.read(|tx| notify::recent(tx, args.limit, args.pending))?;
    let rows: Vec<Shown<'_>> = rows.iter().map(|n| shown(n, ctx)).collect();
    if args.format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        return Ok(0);
    }
    if rows.is_empty() {
        println!("{}", if args.pending { "no notifications waiting" } else { "no notifications yet" });
        return Ok(0);
    }
    // Column widths fit what they hold (ids are 36 characters, instance ids up to 64: the
    // column is as wide as the longest shown), so values stay under their headers.
    let iw = rows.iter().map(|r| r.instance_id.unwrap_or("-").len()).max().unwrap_or(0).max("INSTANCE".len());
    let rw = rows.iter().map(|r| r.receiver.len()).max().unwrap_or(0).max("RECEIVER".len());
    println!("{:<36}  {:<rw$}  {:<22}  {:<iw$}  {:<9}  {:>8}  DETAIL", "ID", "RECEIVER", "TYPE", "INSTANCE", "STATUS", "ATTEMPTS");
    for r in &rows {
        let detail = match (r.status, r.last_error, r.next_attempt) {
            ("delivered", _, _) => format!("delivered {}", r.delivered.map(|t| t.to_string()).unwrap_or_default()),
            ("orphaned", _, _) => crate::notify::orphaned_detail(r.receiver),
            (_, Some(e), Some(next)) => format!("{e}; next attempt {next}"),
            _ => format!("created {}", r.created),
        };
        println!(
            "{:<36}  {:<rw$}  {:<22}  {:<iw$}  {:<9}  {:>8}  {detail}",
            r.id,
            r.receiver,
            r.kind,
            r.instance_id.unwrap_or("-"),
            r.status,
            r.attempts
        );
    }
    Ok(0)
}
