//! The bar chart of one instance as inline SVG: usage and charge per window in two stacked panels,
//! each with its own y scale, sharing the x axis of window start times (UTC). Bars are coloured
//! by state; each bar carries a `<title>` (shown on hover) with its window and exact values.
//!
//! Tick values are exact decimals on a 1-2-5 ladder ([`Axis`]); `f64` is used only to turn a
//! value into a pixel height.

use super::{colour, escape, STATES};
use crate::preview::{InstanceTotal, PreviewRow};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::fmt::Write;

const W: f64 = 1000.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 12.0;
const PANEL_H: f64 = 120.0;
/// Top of the usage plot and of the charge plot; titles sit 20 px above, clear of value labels.
const USAGE_TOP: f64 = 42.0;
const CHARGE_TOP: f64 = USAGE_TOP + PANEL_H + 54.0;
const AXIS_Y: f64 = CHARGE_TOP + PANEL_H;

/// A y axis from 0 to `top` with ticks every `step`, all exact.
#[derive(Debug, PartialEq)]
pub(super) struct Axis {
    pub top: Decimal,
    pub step: Decimal,
}

impl Axis {
    /// The smallest 1-2-5 step giving at most 4 intervals, and the first tick at or above `max`.
    pub fn for_max(max: Decimal) -> Axis {
        if max <= Decimal::ZERO {
            return Axis { top: Decimal::ONE, step: Decimal::ONE };
        }
        let raw = max / Decimal::from(4);
        let mut p = Decimal::ONE;
        while let Some(next) = p.checked_mul(Decimal::TEN).filter(|n| *n <= raw) {
            p = next;
        }
        while p > raw && p.scale() < 20 {
            p /= Decimal::TEN;
        }
        // Checked: near Decimal::MAX a 1-2-5 step can overflow; one interval of `max` then.
        let step = [1, 2, 5, 10].iter().filter_map(|m| p.checked_mul(Decimal::from(*m))).find(|s| *s >= raw).unwrap_or(max);
        let top = max.checked_div(step).and_then(|n| n.ceil().checked_mul(step)).unwrap_or(max);
        Axis { top, step }
    }

    fn ticks(&self) -> impl Iterator<Item = Decimal> + '_ {
        (0..).map_while(|i| self.step.checked_mul(Decimal::from(i))).take_while(|t| *t <= self.top)
    }

    /// Pixels above the baseline for `v` in a plot `h` high.
    fn px(&self, v: Decimal, h: f64) -> f64 {
        v.max(Decimal::ZERO).checked_div(self.top).and_then(|r| r.to_f64()).unwrap_or(0.0).min(1.0) * h
    }
}

/// The chart of one instance's windows.
pub(super) fn svg(t: &InstanceTotal, rows: &[&PreviewRow]) -> String {
    let slot = (W - LEFT - RIGHT) / rows.len().max(1) as f64;
    let rotate = slot < 92.0;
    let height = AXIS_Y + if rotate { 92.0 } else { 44.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"usage and charge per window of {}\" \
         font-size=\"12\" font-family=\"system-ui,sans-serif\">",
        escape(&t.instance_id)
    );
    legend(&mut s, rows);
    if rows.is_empty() {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" fill=\"#57606a\">No windows in the range shown.</text>", W / 2.0, AXIS_Y / 2.0);
    }
    let usage: Vec<(Decimal, String)> = rows.iter().map(|r| (r.usage, r.usage.to_string())).collect();
    let charge: Vec<(Decimal, String)> = rows.iter().map(|r| (r.charge, r.charge_2dp.to_string())).collect();
    panel(&mut s, USAGE_TOP, &format!("Usage per window ({})", t.unit), &usage, rows, t);
    panel(&mut s, CHARGE_TOP, &format!("Charge per window ({}, truncated to 2 decimals)", t.currency), &charge, rows, t);
    x_labels(&mut s, rows, slot, rotate);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#57606a\">window start (UTC)</text>\n</svg>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        height - 8.0
    );
    s
}

/// Swatches for the states present in these rows, right-aligned on the usage title's line.
fn legend(s: &mut String, rows: &[&PreviewRow]) {
    let present: Vec<_> = STATES.iter().filter(|st| rows.iter().any(|r| r.state == st.0)).collect();
    let labels: Vec<String> = present.iter().map(|(name, _, meaning)| format!("{name}: {meaning}")).collect();
    let width = |l: &String| 17.0 + l.chars().count() as f64 * 6.6 + 16.0;
    let mut x = W - RIGHT - labels.iter().map(width).sum::<f64>() + 16.0;
    for ((_, col, _), label) in present.iter().zip(&labels) {
        let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{col}\"/>", USAGE_TOP - 31.0);
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{}\">{}</text>", x + 17.0, USAGE_TOP - 20.0, escape(label));
        x += width(label);
    }
}

/// One panel: title, y ticks with grid lines, one bar per window with its value above when room.
fn panel(s: &mut String, top: f64, title: &str, vals: &[(Decimal, String)], rows: &[&PreviewRow], t: &InstanceTotal) {
    let axis = Axis::for_max(vals.iter().map(|v| v.0).max().unwrap_or_default());
    let base = top + PANEL_H;
    let _ = writeln!(s, "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"600\">{}</text>", top - 20.0, escape(title));
    for tick in axis.ticks() {
        let y = base - axis.px(tick, PANEL_H);
        let _ = writeln!(s, "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e6e9\"/>", W - RIGHT);
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#57606a\">{}</text>", LEFT - 6.0, y + 4.0, tick.normalize());
    }
    let _ = writeln!(s, "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{top}\" y2=\"{base}\" stroke=\"#8c959f\"/>");
    let slot = (W - LEFT - RIGHT) / rows.len().max(1) as f64;
    let bar_w = (slot * 0.7).min(48.0);
    for (i, ((v, label), r)) in vals.iter().zip(rows).enumerate() {
        let h = axis.px(*v, PANEL_H);
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let dash = if r.state == "open" { " stroke=\"#3182bd\" stroke-dasharray=\"3 2\"" } else { "" };
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{}\"{dash}><title>{}</title></rect>",
            base - h,
            colour(r.state),
            escape(&bar_title(r, t))
        );
        if label.len() as f64 * 6.6 < slot {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar_w / 2.0,
                base - h - 4.0,
                escape(label)
            );
        }
    }
    let _ = writeln!(s, "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#8c959f\"/>", W - RIGHT);
}

fn bar_title(r: &PreviewRow, t: &InstanceTotal) -> String {
    format!(
        "{} to {} ({}): usage {} {}, charge {} {} (exact {})",
        r.begin_time, r.end_time, r.state, r.usage, t.unit, r.charge_2dp, t.currency, r.charge
    )
}

/// Window start labels under the charge panel: level when there is room, else rotated and thinned.
fn x_labels(s: &mut String, rows: &[&PreviewRow], slot: f64, rotate: bool) {
    // Thin to a label every ~30 px, on a step that reads well for hours (3, 6, 12, 24...).
    let need = if rotate { (30.0 / slot).ceil() as usize } else { 1 };
    let every = [1, 2, 3, 4, 6, 12, 24, 48, 96, 168, 336, 720].into_iter().find(|k| *k >= need).unwrap_or(need);
    for (i, r) in rows.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let x = LEFT + slot * (i as f64 + 0.5);
        let text = r.begin_time.to_datetime().format("%m-%d %H:%M");
        let _ = writeln!(s, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{AXIS_Y}\" y2=\"{}\" stroke=\"#8c959f\"/>", AXIS_Y + 4.0);
        if rotate {
            let _ = writeln!(s, "<text transform=\"translate({x:.1},{}) rotate(-45)\" text-anchor=\"end\">{text}</text>", AXIS_Y + 14.0);
        } else {
            let _ = writeln!(s, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{text}</text>", AXIS_Y + 18.0);
        }
    }
}
