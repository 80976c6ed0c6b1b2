//! The full command-line definition as clap sees it, with an "Examples:" block under every
//! subcommand's `--help` (issue 17, CLI conventions). The examples live in one table,
//! [`EXAMPLES`], keyed by the subcommand's path (`"instance add"`), so they read as a whole
//! and a unit test fails when a subcommand has none — a new subcommand must bring its example.
//! [`command`] is what `main` parses with and what `meterd completions` and `meterd man`
//! generate from, so the help, the completions and the man pages always describe one CLI.
//!
//! Each subcommand's first example starts with `meterd ` (a test walks every `--help` and
//! checks it); later lines may set a variable or pipe, as an operator would type them.

use super::Cli;
use clap::{CommandFactory, FromArgMatches};

/// Examples per subcommand path (space-separated, as typed after `meterd`).
pub const EXAMPLES: &[(&str, &[&str])] = &[
    ("demo", &["meterd demo", "meterd demo --keep"]),
    (
        "init",
        &["meterd init", "meterd --config /etc/meterd/meterd.toml --db /var/lib/meterd/meterd.db init --key-file /etc/meterd/isv.key"],
    ),
    (
        "ingest",
        &[
            "meterd ingest events.ndjson",
            r#"echo '{"id":"req-1","instance_id":"i-1","quantity":"12.5","time":"2026-11-23T08:15:00Z"}' | meterd ingest -"#,
        ],
    ),
    ("instance", &["meterd instance add i-1 --plan calls --start 2026-11-23T06:20:00Z", "meterd instance list --format json"]),
    ("instance add", &["meterd instance add 7f141bf1-aec8-4859-8323-fb3a8ad50721 --plan calls --start 2026-11-23T06:20:00Z"]),
    ("instance release", &["meterd instance release i-1 --at 2026-12-01T00:00:00Z"]),
    ("instance freeze", &["meterd instance freeze i-1 --at 2026-11-25T10:00:00Z"]),
    ("instance unfreeze", &["meterd instance unfreeze i-1 --at 2026-11-26T10:00:00Z"]),
    ("instance move", &["meterd instance move i-1 --plan calls-v2 --at 2026-11-27T00:00:00Z"]),
    ("instance list", &["meterd instance list", "meterd instance list --format json"]),
    (
        "package",
        &[
            "meterd package add i-1 pkg-1 --quota 1000 --from 2026-11-01T00:00:00Z --to 2027-11-01T00:00:00Z --reset monthly",
            "meterd package list i-1",
        ],
    ),
    ("package add", &["meterd package add i-1 pkg-1 --quota 1000 --from 2026-11-01T00:00:00Z --to 2027-11-01T00:00:00Z --reset monthly"]),
    ("package list", &["meterd package list", "meterd package list i-1 --format json"]),
    ("seal", &["meterd seal", "meterd seal && meterd upload"]),
    (
        "preview",
        &[
            "meterd preview",
            "meterd preview --instance i-1 --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z --format csv",
            "meterd preview --format html > charges.html",
        ],
    ),
    ("status", &["meterd status", "meterd status --format json", "meterd status --check >/dev/null || notify-someone"]),
    ("upload", &["meterd upload", "meterd upload --dry-run", "METERD_ISV_KEY=... meterd upload"]),
    ("rejected", &["meterd rejected", "meterd rejected --format json"]),
    ("notifications", &["meterd notifications", "meterd notifications --pending", "meterd notifications --format json --limit 200"]),
    ("requeue", &["meterd requeue 3f2a9c0d5e7b41a8b6c2d9e0f1a2b3c4", "meterd requeue SN1 SN2", "meterd requeue --all"]),
    ("store", &["meterd store set-timezone +08:00", "meterd store copy --from meterd.db --to postgres://meterd@db.example/meterd"]),
    ("store set-timezone", &["meterd store set-timezone +08:00"]),
    ("store copy", &["meterd store copy --from /var/lib/meterd/meterd.db --to postgres://meterd@db.example/meterd"]),
    (
        "mock-store",
        &[
            "meterd mock-store --listen 127.0.0.1:8480 --key-env MOCK_KEY",
            "MOCK_KEY=local-test-key meterd mock-store --listen 127.0.0.1:8480 --key-env MOCK_KEY --ledger billed.jsonl",
        ],
    ),
    ("run", &["meterd run", "meterd --config /etc/meterd/meterd.toml --db /var/lib/meterd/meterd.db run --listen 127.0.0.1:9464"]),
    ("backup", &["meterd backup /var/lib/meterd/backup-$(date +%F).db"]),
    (
        "completions",
        &[
            "meterd completions bash > /etc/bash_completion.d/meterd",
            "meterd completions zsh > \"${fpath[1]}/_meterd\"",
            "meterd completions fish > ~/.config/fish/completions/meterd.fish",
        ],
    ),
    ("man", &["meterd man | man -l -", "meterd man --dir /usr/local/share/man/man1"]),
];

/// The examples of one subcommand path, if the table has them.
pub fn examples_of(path: &str) -> Option<&'static [&'static str]> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// The "Examples:" block shown under `--help`: the heading, then one two-space indented line
/// per example.
fn block(examples: &[&str]) -> String {
    let mut s = String::from("Examples:");
    for e in examples {
        s.push_str("\n  ");
        s.push_str(e);
    }
    s
}

/// Subcommands that read no config and open no store: the global options [`STORE_OPTIONS`]
/// mean nothing to them, so their `--help` and man pages leave them out (clap_complete's bash
/// script still offers them there, as it offers every hidden option), and one typed on their
/// command line is refused ([`refuse_ignored_store_options`]).
const NO_STORE: &[&str] = &["demo", "mock-store", "completions", "man"];

/// What each [`NO_STORE`] subcommand uses instead of the config and the store: the reason a
/// store option given to it is refused.
const USES_INSTEAD: &[(&str, &str)] = &[
    ("demo", "it uses its own config and store in a temporary directory"),
    ("mock-store", "it keeps its state in memory and in the files --ledger, --instances and --packages name"),
    ("completions", "it prints a script made from the command-line definition alone"),
    ("man", "it prints pages made from the command-line definition alone"),
];

/// The global options (argument ids) that choose the config, the store and the node.
const STORE_OPTIONS: &[&str] = &["config", "db", "node"];

/// The whole CLI, each subcommand (at any depth) with its examples as `after_help`.
pub fn command() -> clap::Command {
    with_examples(hide_store_options(Cli::command()), "")
}

/// Gives each [`NO_STORE`] subcommand a hidden copy of the [`STORE_OPTIONS`]. clap copies a
/// global option into every subcommand that has no argument of that id, so these copies are
/// the ones the subcommand keeps: still accepted (and ignored) as before, never listed.
fn hide_store_options(cli: clap::Command) -> clap::Command {
    let hidden: Vec<clap::Arg> =
        cli.get_arguments().filter(|a| STORE_OPTIONS.contains(&a.get_id().as_str())).map(|a| a.clone().hide(true)).collect();
    NO_STORE.iter().fold(cli, |cli, name| cli.mut_subcommand(name, |s| s.args(hidden.iter().cloned())))
}

fn with_examples(cmd: clap::Command, path: &str) -> clap::Command {
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    let mut cmd = match examples_of(path) {
        Some(e) if !path.is_empty() => cmd.after_help(block(e)),
        _ => cmd,
    };
    for name in names {
        let sub_path = if path.is_empty() { name.clone() } else { format!("{path} {name}") };
        cmd = cmd.mut_subcommand(&name, |s| with_examples(s, &sub_path));
    }
    cmd
}

/// Every subcommand path of `cmd`, depth first (`"instance"`, `"instance add"`, …), without
/// clap's built-in `help`.
pub fn subcommand_paths(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = if prefix.is_empty() { s.get_name().to_string() } else { format!("{prefix} {}", s.get_name()) };
            out.push(path.clone());
            walk(s, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, "", &mut out);
    out
}

/// Refuses a store option (`--config`, `--db`, `--node`) typed on the command line of a
/// subcommand that reads no config and opens no store (`demo`, `mock-store`, `completions`,
/// `man`), which would ignore it (new-user trial: `meterd demo --db x.db` ran on a
/// temporary store without a word). The error names the option, the command and what the
/// command uses instead; clap prints it as a usage error (exit 2). The same option from the
/// environment (`METERD_CONFIG`, `METERD_DB`, `METERD_NODE`) is fine: people export those for
/// every command. `cmd` is the definition `matches` came from.
pub fn refuse_ignored_store_options(cmd: &mut clap::Command, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    use clap::parser::ValueSource;
    let Some((name, sub)) = matches.subcommand() else { return Ok(()) };
    let Some((_, instead)) = USES_INSTEAD.iter().find(|(n, _)| *n == name) else { return Ok(()) };
    // A global option may come before the subcommand (`meterd --db x demo`) or after it.
    let typed = STORE_OPTIONS.iter().find(|id| [matches, sub].iter().any(|m| m.value_source(id) == Some(ValueSource::CommandLine)));
    let Some(id) = typed else { return Ok(()) };
    let message = format!("`--{id}` has no effect on `meterd {name}` ({instead}); drop it");
    cmd.build();
    let kind = clap::error::ErrorKind::ArgumentConflict;
    // The subcommand's error shows its own usage line; it is always found (it matched).
    Err(match cmd.find_subcommand_mut(name) {
        Some(sub_cmd) => sub_cmd.error(kind, message),
        None => cmd.error(kind, message),
    })
}

/// Parses the process's arguments with [`command`] (clap prints help, version and usage
/// errors itself and exits 0 or 2, as `Cli::parse` does; so does
/// [`refuse_ignored_store_options`]).
pub fn parse() -> Cli {
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    refuse_ignored_store_options(&mut cmd, &matches).unwrap_or_else(|e| e.exit());
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_an_example_and_every_example_a_subcommand() {
        let paths = subcommand_paths(&command());
        let missing: Vec<_> = paths.iter().filter(|p| examples_of(p).is_none_or(|e| e.is_empty())).collect();
        assert!(missing.is_empty(), "subcommands without an example in cli::help::EXAMPLES: {missing:?}");
        let stale: Vec<_> = EXAMPLES.iter().map(|(p, _)| *p).filter(|p| !paths.iter().any(|q| q == p)).collect();
        assert!(stale.is_empty(), "examples of subcommands that do not exist: {stale:?}");
    }

    #[test]
    fn every_example_names_meterd_and_its_own_subcommand() {
        for (path, examples) in EXAMPLES {
            assert!(examples[0].starts_with("meterd "), "{path}: the first example starts with `meterd `");
            for e in *examples {
                let at = e.find("meterd ").unwrap_or_else(|| panic!("{path}: {e:?} does not run meterd"));
                assert!(e[at..].contains(path.split(' ').next_back().unwrap_or(path)), "{path}: {e:?} does not show `{path}`");
            }
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        command().debug_assert();
    }

    /// `meterd ARGS… --help` as clap prints it.
    fn help_of(args: &[&str]) -> String {
        let argv = ["meterd"].iter().chain(args).chain(&["--help"]).copied().collect::<Vec<_>>();
        let e = command().try_get_matches_from(argv).expect_err("--help prints the help");
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        e.to_string()
    }

    /// `--config`, `--db` and `--node` are left out of the help of the commands that read no
    /// config and open no store (new-user trial: `mock-store --help` listed them), and refused
    /// there when typed ([`store_options_typed_where_they_mean_nothing_are_refused`]); every
    /// other command lists them.
    #[test]
    fn store_options_are_listed_only_where_they_mean_something() {
        for name in NO_STORE {
            let help = help_of(&[name]);
            for flag in ["--config", "--db", "--node"] {
                assert!(!help.contains(flag), "`{name} --help` lists {flag}:\n{help}");
            }
            assert!(help.contains("--log-format"), "{name}: {help}");
        }
        for path in [&[][..], &["status"], &["instance", "add"], &["store", "copy"], &["run"]] {
            let help = help_of(path);
            for flag in ["--config", "--db", "--node", "--log-format"] {
                assert!(help.contains(flag), "`{path:?} --help` does not list {flag}:\n{help}");
            }
        }
    }

    /// A store option typed on the command line of a command that would ignore it is a usage
    /// error naming the option, the command and what it uses instead (new-user trial: `meterd
    /// demo --db x.db` ran on its own temporary store without a word), before or after the
    /// command's name; every other command takes them.
    #[test]
    fn store_options_typed_where_they_mean_nothing_are_refused() {
        let check = |argv: &[&str]| {
            let mut cmd = command();
            let matches = cmd.try_get_matches_from_mut(argv).expect("clap parses it");
            refuse_ignored_store_options(&mut cmd, &matches)
        };
        for name in NO_STORE {
            let tail: &[&str] = match *name {
                "mock-store" => &["--key-env", "K"],
                "completions" => &["bash"],
                _ => &[],
            };
            for (flag, value) in [("--config", "c.toml"), ("--db", "x.db"), ("--node", "n")] {
                let after: Vec<&str> = ["meterd", name].iter().chain(tail).chain(&[flag, value]).copied().collect();
                let before: Vec<&str> = ["meterd", flag, value, name].iter().chain(tail).copied().collect();
                for argv in [after, before] {
                    let e = check(&argv).expect_err("refused");
                    assert_eq!(e.exit_code(), 2, "{argv:?}");
                    let text = e.to_string();
                    assert!(text.contains(&format!("`{flag}` has no effect on `meterd {name}` (it ")), "{argv:?}: {text}");
                    assert!(text.contains("drop it"), "{argv:?}: {text}");
                }
            }
            let plain: Vec<&str> = ["meterd", name].iter().chain(tail).copied().collect();
            check(&plain).expect("without them it runs");
        }
        check(&["meterd", "--db", "x.db", "--config", "c.toml", "--node", "n", "status"]).expect("status uses them");
    }

    /// A command group's one-line description (`meterd --help`, `meterd instance --help`) names
    /// each of its subcommands (new-user trial: `instance` said "register, release and list"
    /// and left out freeze, unfreeze and move).
    #[test]
    fn each_command_group_names_its_subcommands() {
        let cmd = command();
        let groups: Vec<_> = cmd.get_subcommands().filter(|g| g.has_subcommands()).collect();
        assert!(groups.iter().any(|g| g.get_name() == "instance"), "instance is a group");
        for group in groups {
            let about = group.get_about().map(|a| a.to_string()).unwrap_or_default();
            for sub in group.get_subcommands().map(|s| s.get_name()).filter(|n| *n != "help") {
                assert!(about.contains(sub), "`meterd {}`'s description does not name `{sub}`: {about:?}", group.get_name());
            }
        }
    }

    /// The README's synopsis (*Commands and exit codes*) names every option `meterd --help`
    /// lists before the command (new-user trial: `--node` was missing).
    #[test]
    fn the_readme_synopsis_names_every_global_option() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let synopsis = readme
            .split("## Commands and exit codes")
            .nth(1)
            .and_then(|s| s.lines().find(|l| l.starts_with("meterd [")))
            .expect("the README has the synopsis");
        let cmd = command();
        let globals: Vec<_> = cmd.get_arguments().filter(|a| a.is_global_set() && !a.is_hide_set()).filter_map(|a| a.get_long()).collect();
        assert!(globals.contains(&"node"), "{globals:?}");
        for long in globals {
            assert!(synopsis.contains(&format!("[--{long} ")), "the README's synopsis does not name --{long}: {synopsis}");
        }
    }
}
