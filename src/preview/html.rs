//! The preview as one self-contained HTML page (inline SVG, nothing fetched).

use super::Preview;

/// Renders the page.
pub fn render(p: &Preview) -> String {
    let _ = p;
    String::from("<!doctype html><title>meterd preview</title>")
}
