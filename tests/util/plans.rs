//! Plan blocks the suites share, as config TOML: one copy of each, so a change to a plan's
//! shape is made once (issue 16 item 6; the `calls` plan was written out three times). Each is
//! a `[[plan]]` table: a suite puts its top-level keys (`timezone = …`) and other sections
//! before it, since TOML ends the root table at the first `[section]`. Standalone (nothing of
//! the rest of the harness), so a suite that takes only this file can include it by
//! `#[path = "util/plans.rs"]`.
//!
//! The library's own unit tests (`src/collector/result.rs`) cannot reach `tests/` and keep
//! their own text.

#![allow(dead_code)]

/// The hourly `calls` plan (factor `api_calls`, unit `call`), fixed pricing at `price` per call
/// (exact decimal text, e.g. `"0.3"`).
pub fn calls_plan(price: &str) -> String {
    format!(
        r#"[[plan]]
name = "calls"
factor = "api_calls"
unit = "call"
period = "hour"
pricing = "fixed"
price = "{price}"
"#
    )
}
