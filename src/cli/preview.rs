//! `meterd preview`: charges per instance and window, as a table, JSON, CSV or an HTML page.
//! An inverted range (`--from` after `--to`) is bad usage (exit 2); any other range answers.
//! The table's PREPAID column shows the units a row's packages paid for: `drawn` from its
//! stop-before-excess package, or `covered` by pay-per-use packages (the JSON and CSV fields);
//! CSV also has `relate_pkg_instance`. A sealed record the store will refuse (a release or
//! freeze reported after its seal contradicts it) shows `flagged` (the reason; the table marks
//! its state `STATE (flagged)`) and is charged 0.

use super::{Ctx, Failure};
use crate::model::Timestamp;
use crate::preview::{Preview, PreviewQuery};

/// `meterd preview --format`: the table, JSON (the HTTP API's shape), CSV or one HTML page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this instance.
    #[arg(long)]
    instance: Option<String>,
    /// Windows starting at or after this time.
    #[arg(long, value_parser = super::timestamp)]
    from: Option<Timestamp>,
    /// Windows starting before this time.
    #[arg(long, value_parser = super::timestamp)]
    to: Option<Timestamp>,
    /// The time open `weighted_sum` windows are integrated up to (default: the clock); other
    /// plans show the store as it is.
    #[arg(long, value_parser = super::timestamp)]
    now: Option<Timestamp>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(super) format: Format,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let q = PreviewQuery::new(args.instance.clone(), args.from, args.to)
        .map_err(|e| Failure::usage(format!("--from/--to: {e}")))?
        .at(super::now_or(args.now));
    let mut store = ctx.store()?;
    let p = crate::preview::preview(&mut store, &ctx.cfg, &q)?;
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&p).unwrap_or_default(),
        Format::Csv => to_csv(&p),
        Format::Html => crate::preview::html::render(&p),
        Format::Table => crate::views::preview_table(&p),
    };
    // The CSV text ends its last record with a newline already; another would be an empty row.
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
    Ok(0)
}

/// The CSV header: one column per [`crate::preview::PreviewRow`] field, in this order.
const CSV_HEADER: [&str; 13] = [
    "instance_id",
    "plan",
    "begin_time",
    "end_time",
    "state",
    "usage",
    "charge",
    "charge_2dp",
    "metering_sn",
    "relate_pkg_instance",
    "drawn",
    "covered",
    "flagged",
];

/// The rows as RFC 4180 CSV (the `csv` crate): a cell holding a comma, a double quote or a line
/// break (plan names are free text) is quoted, quotes doubled; absent values are empty cells.
fn to_csv(p: &Preview) -> String {
    // `\n` line ends, as before the crate (and as the table and JSON outputs end their lines).
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let opt = |d: Option<rust_decimal::Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    let header = w.write_record(CSV_HEADER);
    let rows = p.rows.iter().try_for_each(|r| {
        w.write_record([
            r.instance_id.as_str(),
            r.plan.as_str(),
            &r.begin_time.to_string(),
            &r.end_time.to_string(),
            r.state,
            &r.usage.to_string(),
            &r.charge.to_string(),
            &r.charge_2dp.to_string(),
            r.metering_sn.as_deref().unwrap_or(""),
            r.relate_pkg_instance.as_deref().unwrap_or(""),
            &opt(r.drawn),
            &opt(r.covered),
            r.flagged.as_deref().unwrap_or(""),
        ])
    });
    // Writing into a Vec cannot fail, and every cell is a Rust string (valid UTF-8); were it
    // otherwise the output would be empty, never a panic.
    let bytes = header.and(rows).ok().and_then(|()| w.into_inner().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::PreviewRow;
    use rust_decimal::Decimal;

    #[test]
    fn csv_quotes_free_text_and_leaves_plain_cells_alone() {
        let t = |s: &str| crate::model::parse_rfc3339(s).unwrap();
        let row = PreviewRow {
            instance_id: "i-1".into(),
            plan: "gold, \"annual\"".into(),
            begin_time: t("2026-11-23T10:00:00Z"),
            end_time: t("2026-11-23T11:00:00Z"),
            state: "sealed",
            usage: Decimal::new(805, 1),
            charge: Decimal::new(3, 0),
            charge_2dp: Decimal::new(300, 2),
            metering_sn: None,
            relate_pkg_instance: Some("pkg-10".into()),
            covered: None,
            drawn: Some(Decimal::new(10, 0)),
            flagged: None,
        };
        let p = Preview { rows: vec![row], instances: Vec::new(), totals: Vec::new() };
        let expected = format!(
            "{}\ni-1,\"gold, \"\"annual\"\"\",2026-11-23T10:00:00Z,2026-11-23T11:00:00Z,sealed,80.5,3,3.00,,pkg-10,10,,\n",
            CSV_HEADER.join(",")
        );
        assert_eq!(to_csv(&p), expected);
    }
}
