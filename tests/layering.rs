//! The dependency direction of `docs/style.md` (issue 16, item 3): library modules never
//! import `cli`. Views that the command line shares with the server or the demo live below
//! both (`src/views.rs`). Reads every `src/**/*.rs` outside `src/cli/` and `src/main.rs`, and
//! fails naming each file and line that reaches into `crate::cli`.
//!
//! And the database drivers stay inside the store (issue 16, "done when"): a path through
//! `rusqlite`, `postgres`, `tokio_postgres` (or their TLS glue) appears only in files under
//! `src/store/`; everything above speaks the store's own API (`store::sql::Tx`, typed store
//! functions, `StoreError`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The non-comment lines of `text` for which `hit` holds, numbered from 1.
fn matching_lines(text: &str, hit: impl Fn(&str) -> bool) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| hit(l))
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

/// `src/<file>:<line>: <text>` for every line `find` reports in the files under `src/` that
/// `skip` (given the path relative to `src/`) does not leave out.
fn offending_lines(skip: impl Fn(&Path) -> bool, find: impl Fn(&Path, &str) -> Vec<(usize, String)>) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "expected the whole source tree under {}", src.display());
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src").to_path_buf();
        if skip(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (line, l) in find(&rel, &text) {
            found.push(format!("src/{}:{line}: {l}", rel.display()));
        }
    }
    found
}

/// The lines of `text` (a file directly in `src/` when `top`) that import the `cli` module.
fn cli_imports(text: &str, top: bool) -> Vec<(usize, String)> {
    matching_lines(text, |l| l.contains("crate::cli") || (top && (l.contains("super::cli") || l.contains("use cli::"))))
}

#[test]
fn no_library_module_imports_cli() {
    let found = offending_lines(
        |rel| rel.starts_with("cli") || rel == Path::new("main.rs") || rel == Path::new("lib.rs"),
        |rel, text| cli_imports(text, rel.components().count() == 1),
    );
    assert!(
        found.is_empty(),
        "library modules import `cli`; move what they share into a module below both (e.g. src/views.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_an_import() {
    assert_eq!(cli_imports("use crate::cli::preview::table;", false).len(), 1);
    assert_eq!(cli_imports("    print!(\"{}\", crate::cli::preview::table(&p));", false).len(), 1);
    assert_eq!(cli_imports("use super::cli;", true).len(), 1);
    assert!(cli_imports("pub use cli::{run_cli, MockStoreArgs};", false).is_empty(), "mockstore's own cli module");
    assert!(cli_imports("//! the caller's part (`crate::cli::backup`)", false).is_empty());
}

/// Crates whose types belong to the store alone.
const DRIVERS: [&str; 4] = ["rusqlite", "postgres", "tokio_postgres", "tokio_postgres_rustls"];

/// The lines of `text` that name a path through a database driver crate (`rusqlite::…`,
/// `postgres::…`, …); comments do not count, and neither does a longer name ending in one
/// (`store::pg_postgres::`).
fn driver_paths(text: &str) -> Vec<(usize, String)> {
    let names = |l: &str| {
        DRIVERS.iter().any(|d| {
            let needle = format!("{d}::");
            l.match_indices(&needle).any(|(at, _)| l[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_')))
        })
    };
    matching_lines(text, names)
}

#[test]
fn database_drivers_appear_only_under_store() {
    let found = offending_lines(|rel| rel.starts_with("store"), |_, text| driver_paths(text));
    assert!(
        found.is_empty(),
        "database driver types outside src/store/; give the store a function over `store::sql::Tx` (the store gets the connection) instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_driver_check_sees_a_driver_path() {
    assert_eq!(driver_paths("fn sqlite<'c>(tx: &Tx<'c>) -> Result<&'c rusqlite::Connection, StoreError> {").len(), 1);
    assert_eq!(driver_paths("use rusqlite::{params, Connection};").len(), 1);
    assert_eq!(driver_paths("    let c: postgres::Client = connect()?;").len(), 1);
    assert_eq!(driver_paths("use tokio_postgres::NoTls;").len(), 1);
    assert!(driver_paths("/// reads through `rusqlite::Connection` inside the store").is_empty(), "a comment");
    assert!(driver_paths("let url = \"postgres://h/db\";").is_empty(), "a URL is not a path");
    assert!(driver_paths("use crate::store::pg_postgres::x;").is_empty(), "a longer name");
}

/// The top-level modules of `src/` (files and folders, without `lib`, `main` and `*_tests`).
fn top_modules() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string())
        .filter(|m| m != "lib" && m != "main" && !m.ends_with("_tests"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The README's module map (the `| module | role |` table of *How it works*) names every
/// top-level module, so a newcomer finds each one there (issue 16, "done when").
#[test]
fn the_readme_module_map_names_every_module() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table: String = readme
        .split("| module | role |")
        .nth(1)
        .expect("README has the module map")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<String> = top_modules().into_iter().filter(|m| !table.contains(&format!("`{m}`"))).collect();
    assert!(missing.is_empty(), "src/ modules the README's module map does not name: {missing:?}");
    assert!(top_modules().contains(&"store".to_string()) && top_modules().len() > 20, "the check sees the modules");
}
