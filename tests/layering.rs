//! The dependency direction of `docs/style.md` (issue 16, item 3): library modules never
//! import `cli`. Views that the command line shares with the server or the demo live below
//! both (`src/views.rs`). Reads every `src/**/*.rs` outside `src/cli/` and `src/main.rs`, and
//! fails naming each file and line that reaches into `crate::cli`.

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

/// The lines of `text` (a file directly in `src/` when `top`) that import the `cli` module.
fn cli_imports(text: &str, top: bool) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| l.contains("crate::cli") || (top && (l.contains("super::cli") || l.contains("use cli::"))))
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

#[test]
fn no_library_module_imports_cli() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "expected the whole source tree under {}", src.display());
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src").to_path_buf();
        if rel.starts_with("cli") || rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (line, l) in cli_imports(&text, rel.components().count() == 1) {
            found.push(format!("src/{}:{line}: {l}", rel.display()));
        }
    }
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
