//! The deployment examples in `contrib/` stay true: the configuration the Kubernetes manifest
//! embeds loads, and the shared-store systemd unit takes the database URL from an environment
//! file (never from the unit, which `systemctl show` prints to any user).
//!
//! Monitoring (issue 17): every metric the Grafana dashboard and the Prometheus alert rules
//! query exists in a live daemon's `/metrics` (SQLite and, when a PostgreSQL server is
//! available, a shared store for the lease gauges), with the right type for how it is used
//! (`rate`/`increase` only on counters, `_sum`/`_count` only of summaries or histograms,
//! `_bucket` only of histograms); `promtool check rules` and `promtool test rules` pass when
//! promtool is installed. CLI conventions: completions, the man page and an example under
//! every subcommand's `--help`.

mod util;

use meterd::config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};
use util::mock::{mock_config, Mock};
use util::{example_config_with, Env, Ev};

#[test]
fn the_kubernetes_sidecar_config_loads_and_names_the_port_its_probes_use() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/k8s-sidecar.yaml")).unwrap();
    let start = yaml.find("  meterd.toml: |\n").expect("the manifest embeds meterd.toml") + "  meterd.toml: |\n".len();
    let toml: String = yaml[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let cfg = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("contrib/k8s-sidecar.yaml's meterd.toml: {e}\n{toml}"));
    let port = cfg.server.listen.rsplit(':').next().unwrap().to_string();
    assert!(
        yaml.contains(&format!("port: {port}")) && yaml.contains(&format!("containerPort: {port}")),
        "probes use the listen port {port}"
    );
    assert!(yaml.contains("secretKeyRef: { name: meterd, key: database-url }"), "the URL comes from a Secret");
}

#[test]
fn the_shared_store_unit_reads_the_url_from_an_environment_file() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/meterd-shared.service")).unwrap();
    assert!(unit.lines().any(|l| l == "EnvironmentFile=/etc/meterd/meterd.env"));
    assert!(!unit.lines().any(|l| l.starts_with("Environment=METERD_DB")), "no database URL (with its password) in the unit itself");
}

// ---------------------------------------------------------------------------------------------
// Monitoring: the dashboard and the rules query real metrics.

const KEY: &str = "contrib-test-key-0123456789";

/// A metric family of the exposition: its `# TYPE`, and whether it had a sample.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    sampled: bool,
}

/// Metric families of a Prometheus text exposition, by name (samples of a summary's
/// `_sum`/`_count` mark their family sampled).
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut f: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            f.entry(name.to_string()).or_default().kind = kind.to_string();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = [name, name.trim_end_matches("_sum"), name.trim_end_matches("_count"), name.trim_end_matches("_bucket")]
                .into_iter()
                .find(|n| f.contains_key(*n))
                .unwrap_or_else(|| panic!("sample {name} without a # TYPE line"));
            f.get_mut(base).unwrap().sampled = true;
        }
    }
    f
}

/// A metric a query reads, and the function it is the argument of (if any).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    metric: String,
    inside: Option<String>,
}

/// PromQL keywords that are not metric names.
const KEYWORDS: &[&str] = &["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"];

/// The metrics a PromQL expression reads: identifiers outside strings, label matchers `{…}`,
/// ranges `[…]` and label lists `by (…)`/`on (…)`…, not followed by `(` (functions) and not
/// keywords. Each comes with the function whose argument it is, so `rate(x[5m])` is known to
/// rate `x`. Panics on an identifier it cannot place, so a query it misreads fails loudly.
fn metrics_of(expr: &str) -> Vec<Use> {
    let b: Vec<char> = expr.chars().collect();
    let (mut i, mut out, mut calls): (usize, Vec<Use>, Vec<(String, i32)>) = (0, Vec::new(), Vec::new());
    let mut depth = 0;
    let mut pending_fn: Option<String> = None;
    let skip_to = |i: usize, close: char| -> usize {
        let mut j = i + 1;
        let mut quote: Option<char> = None;
        while j < b.len() {
            match (quote, b[j]) {
                (Some(q), c) if c == q && b[j - 1] != '\\' => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(b[j]),
                (None, c) if c == close => return j + 1,
                _ => {}
            }
            j += 1;
        }
        panic!("unclosed {close:?} in {expr}");
    };
    while i < b.len() {
        let c = b[i];
        if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '"' || c == '\'' || c == '`' {
            let q = c;
            i += 1;
            while i < b.len() && !(b[i] == q && b[i - 1] != '\\') {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&lower.as_str()) {
                if b.get(j) == Some(&'(') {
                    i = skip_to(j, ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) {
            } else if b.get(j) == Some(&'(') || next_word_is_grouping(&b[j..]) {
                // A function call, or an aggregation written `sum by (…) (…)`.
                pending_fn = Some(word);
            } else {
                assert!(word.starts_with("meterd_"), "`{word}` in {expr}: not a meterd metric (or the extractor misread the query)");
                out.push(Use { metric: word, inside: calls.last().map(|(f, _)| f.clone()) });
            }
        } else if c == '(' {
            depth += 1;
            if let Some(f) = pending_fn.take() {
                calls.push((f, depth));
            }
            i += 1;
        } else if c == ')' {
            if calls.last().is_some_and(|(_, d)| *d == depth) {
                calls.pop();
            }
            depth -= 1;
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `rest` starts with `by` or `without` followed by `(` (an aggregation's grouping).
fn next_word_is_grouping(rest: &[char]) -> bool {
    let s: String = rest.iter().take(16).collect::<String>().to_ascii_lowercase();
    ["by", "without"].iter().any(|k| s.strip_prefix(k).is_some_and(|r| r.trim_start().starts_with('(')))
}

#[test]
fn the_metric_extractor_reads_promql_as_prometheus_does() {
    let uses = metrics_of(
        r#"sum by (reason, instance) (rate(meterd_a_total{job=~"x|y", q="a{b}"}[5m])) / on (job) group_left meterd_b and 1.5e3 > bool max_over_time(meterd_c[$__rate_interval]) unless meterd_d offset 5m"#,
    );
    let want = [("meterd_a_total", Some("rate")), ("meterd_b", None), ("meterd_c", Some("max_over_time")), ("meterd_d", None)];
    let got: Vec<_> = uses.iter().map(|u| (u.metric.as_str(), u.inside.as_deref())).collect();
    assert_eq!(got, want);
    let r = std::panic::catch_unwind(|| metrics_of("sum(up)"));
    assert!(r.is_err(), "a non-meterd identifier is reported, not skipped");
}

/// Every PromQL expression of the dashboard (panel targets) and the `label_values` metric of
/// its variables.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(util::repo_file("contrib/grafana/meterd.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            let inner = q.strip_prefix("label_values(").unwrap_or_else(|| panic!("variable query {q}"));
            out.push(inner.split([',', '{']).next().unwrap().trim().to_string());
        }
    }
    assert!(out.len() > 20, "the dashboard's queries were found: {out:?}");
    out
}

/// Every `expr:` of the rules file, inline or as a `|` block.
fn rule_queries(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(util::repo_file(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(at) = line.find("expr:") else { continue };
        if line.trim_start().starts_with('#') {
            continue;
        }
        let rest = line[at + 5..].trim();
        if rest == "|" || rest == ">" || rest == "|-" || rest == ">-" {
            let indent = at + 2;
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join(" "));
        } else {
            out.push(rest.trim_matches(['"', '\'']).to_string());
        }
    }
    out
}

/// Checks each query's metrics against the exposition; the list of problems.
fn check_queries(what: &str, queries: &[String], fam: &BTreeMap<String, Family>) -> Vec<String> {
    let mut problems = Vec::new();
    for q in queries {
        for u in metrics_of(q) {
            let m = &u.metric;
            let kind = |name: &str| fam.get(name).map(|f| f.kind.as_str());
            let (base, ok) = if let Some(k) = kind(m) {
                (m.clone(), k != "summary" && k != "histogram" || u.inside.is_none())
            } else if let Some(b) = m.strip_suffix("_bucket").filter(|b| kind(b) == Some("histogram")) {
                (b.to_string(), true)
            } else if let Some(b) =
                m.strip_suffix("_sum").or(m.strip_suffix("_count")).filter(|b| matches!(kind(b), Some("summary" | "histogram")))
            {
                (b.to_string(), true)
            } else {
                problems.push(format!("{what}: `{m}` is not in /metrics (query: {q})"));
                continue;
            };
            let counter_like = kind(&base) == Some("counter") || base != *m;
            if matches!(u.inside.as_deref(), Some("rate" | "irate" | "increase")) && !counter_like {
                problems.push(format!(
                    "{what}: {}() over `{m}`, which is a {:?}, not a counter (query: {q})",
                    u.inside.as_deref().unwrap_or(""),
                    kind(&base)
                ));
            }
            if !ok {
                problems.push(format!("{what}: `{m}` is a summary/histogram family used whole inside a function (query: {q})"));
            }
        }
    }
    problems
}

/// `text` of `/metrics` of a daemon once `pred` holds on it (15 s at most).
fn scrape_until(d: &util::Daemon, path: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let r = d.http().get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        if pred(&text) {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{path} never showed {what}:\n{text}\n{}", d.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exposition of a SQLite daemon after a little of everything: events (one refused), a
/// stop-before-excess package used up, a late event of a `max` plan, records sealed and uploaded to the mock store (the
/// first attempt failing), plus the audit scrape.
fn sqlite_exposition(mock: &Mock) -> String {
    let endpoint = mock.endpoint();
    let env = Env::with_config(&example_config_with(&[
        ("endpoint = \"https://mkt.myhuaweicloud.com\"", &format!("endpoint = {endpoint:?}")),
        ("# fallback = \"https://mkt.myhuaweicloud.cn\"", "fallback = \"\""),
        ("seal = \"0 */5 * * * *\"", "seal = \"* * * * * *\""),
        ("upload = \"30 */5 * * * *\"", "upload = \"* * * * * *\""),
        ("# package = \"stop\"      #", "package = \"stop\"      #"),
    ]));
    env.add_instance("inst-0", "calls", "2026-11-01T00:00:00Z");
    env.run(&["package", "add", "inst-0", "pkg-1", "--quota", "5", "--from", "2026-11-01T00:00:00Z", "--to", "2027-11-01T00:00:00Z"])
        .success();
    let lines: Vec<String> =
        (0..4).map(|h| Ev::new(&format!("e{h}"), "inst-0", "2", &format!("2026-11-23T{:02}:10:00Z", 6 + h)).json()).collect();
    // Stored before the daemon starts: its first seal tick passes every closed window, so an
    // event for one of them arriving later would be late (carried into the open window).
    env.add_instance("seats-0", "seats", "2026-11-01T00:00:00Z");
    let mut lines = lines;
    lines.push(Ev::new("s1", "seats-0", "5", "2026-11-23T06:10:00Z").json());
    env.ingest_file("events.ndjson", &util::ndjson(&lines)).success();
    let d = env.daemon_with(&[], &[("METERD_ISV_KEY", KEY)]);
    let mut body = util::ndjson(&[Ev::new("open", "inst-0", "1", "2026-11-23T11:30:00Z").json()]);
    body.extend_from_slice(b"{\"id\":\"bad\",\"instance_id\":\"inst-0\",\"quantity\":\"-1\",\"time\":\"2026-11-23T11:00:00Z\"}\n");
    let r = d.http().events(body);
    assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    // Waits for the upload to have delivered (the scrape itself is read again below).
    scrape_until(&d, "/metrics", "a delivered record", |t| {
        t.lines().any(|l| l.starts_with("meterd_records_delivered_total ") && !l.ends_with(" 0"))
    });
    // A `max` plan's event for a sealed window: stored, billed nowhere, counted per instance.
    let late = d.http().events(util::ndjson(&[Ev::new("s2", "seats-0", "7", "2026-11-23T06:20:00Z").json()]));
    assert_eq!(late.json()["accepted"], 1, "{}", late.text());
    let text = scrape_until(&d, "/metrics", "the late unbilled event", |t| t.contains("meterd_late_unbilled_events{"));
    let audit = d.http().get("/metrics?audit=1");
    assert_eq!(audit.status, 200, "{}", audit.text());
    assert!(audit.text().contains("\nmeterd_conservation_violations 0\n"), "{}", audit.text());
    assert!(!text.contains("meterd_conservation_violations"), "the audit only runs when asked");
    assert!(text.contains("meterd_quota_exhausted{instance_id=\"inst-0\"} 1"), "{text}");
    assert_eq!(d.http().get("/metrics?audit=yes").status, 400);
    format!(
        "{text}{}",
        audit.text().lines().filter(|l| l.contains("meterd_conservation_violations")).map(|l| format!("{l}\n")).collect::<String>()
    )
}

/// The exposition of a daemon on a shared PostgreSQL store once it holds the sealer lease
/// (None, with the harness's skip notice, without a PostgreSQL server).
fn postgres_exposition() -> Option<String> {
    let pg = util::pg::PgCluster::shared()?;
    let mut env = Env::new();
    env.db = std::path::PathBuf::from(pg.fresh_db());
    let d = env.daemon_with(&["--node", "node-a"], &[("METERD_ISV_KEY", KEY)]);
    Some(scrape_until(&d, "/metrics", "the lease held", |t| t.contains("\nmeterd_lease_held 1\n")))
}

#[test]
fn every_metric_the_dashboard_and_the_alert_rules_query_exists_in_metrics() {
    let mock = Mock::start(mock_config(KEY, util::NOW));
    let mut text = sqlite_exposition(&mock);
    match postgres_exposition() {
        Some(pg) => text.push_str(&pg),
        None => eprintln!("the lease metrics (meterd_lease_*, meterd_nodes_seen) are checked only with a PostgreSQL server"),
    }
    let fam = families(&text);
    let mut problems = check_queries("contrib/grafana/meterd.json", &dashboard_queries(), &fam);
    problems.extend(check_queries("contrib/prometheus/meterd-alerts.yml", &rule_queries("contrib/prometheus/meterd-alerts.yml"), &fam));
    assert!(problems.is_empty(), "{}\n\n/metrics:\n{text}", problems.join("\n"));
    // Every family the dashboard or the rules read was also sampled (not only declared), but
    // the failure counters, which only get samples when something failed.
    let read: BTreeSet<String> = dashboard_queries()
        .iter()
        .chain(rule_queries("contrib/prometheus/meterd-alerts.yml").iter())
        .flat_map(|q| metrics_of(q))
        .map(|u| u.metric.trim_end_matches("_sum").trim_end_matches("_count").to_string())
        .collect();
    let unsampled: Vec<_> = read
        .iter()
        .filter(|m| !m.ends_with("_failures_total") && fam.get(*m).is_some_and(|f| !f.sampled))
        .filter(|m| !(m.starts_with("meterd_lease_") || *m == "meterd_nodes_seen"))
        .collect();
    assert!(unsampled.is_empty(), "declared but without a sample after the traffic: {unsampled:?}\n{text}");
}

#[test]
fn the_alert_rules_have_for_severity_summary_and_a_description_naming_a_command() {
    let text = std::fs::read_to_string(util::repo_file("contrib/prometheus/meterd-alerts.yml")).unwrap();
    let rules: Vec<&str> = text.split("      - alert: ").skip(1).collect();
    assert!(rules.len() >= 8, "{} rules", rules.len());
    for r in rules {
        let name = r.lines().next().unwrap();
        for key in ["expr:", "for:", "severity:", "summary:", "description:"] {
            assert!(r.contains(key), "{name} lacks {key}");
        }
        assert!(r.contains("`meterd "), "{name}: the description names the meterd command to run");
    }
}

/// promtool from the OS package `prometheus`, if installed. `.ci/run` installs it, so under
/// `CI=true` its absence is a failure.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing under CI=true: .ci/run installs the OS package prometheus"
        );
        eprintln!("promtool checks skipped: promtool is not installed (Debian package `prometheus`)");
    }
    found.then_some("promtool")
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let Some(promtool) = promtool() else { return };
    let dir = util::repo_file("contrib/prometheus");
    for args in [["check", "rules", "meterd-alerts.yml"], ["test", "rules", "meterd-alerts.test.yml"]] {
        let out = Command::new(promtool).args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// CLI conventions.

fn meterd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(util::bin()).args(args).env_remove("METERD_CONFIG").env_remove("METERD_DB").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The subcommand paths (`instance add`, …) as `meterd help` lists them, walked recursively.
fn subcommands(prefix: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.to_vec();
    args.push("--help");
    let (code, out, err) = meterd(&args);
    assert_eq!(code, 0, "meterd {}: {err}", args.join(" "));
    let mut found = Vec::new();
    let mut in_commands = false;
    for line in out.lines() {
        if line == "Commands:" {
            in_commands = true;
        } else if in_commands && line.starts_with("  ") {
            let name = line.split_whitespace().next().unwrap();
            if name != "help" {
                let path: Vec<String> = prefix.iter().map(|s| s.to_string()).chain([name.to_string()]).collect();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                found.extend(subcommands(&p));
                found.push(path);
            }
        } else if in_commands && !line.starts_with(' ') {
            in_commands = false;
        }
    }
    found
}

#[test]
fn every_subcommands_help_shows_an_example() {
    let all = subcommands(&[]);
    assert!(all.len() >= 25, "{all:?}");
    for path in &all {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, out, _) = meterd(&args);
        assert_eq!(code, 0);
        let examples: Vec<&str> = out.lines().skip_while(|l| *l != "Examples:").skip(1).map(str::trim).collect();
        let cmd = format!("meterd {}", path.join(" "));
        assert!(examples.iter().any(|l| l.starts_with(&cmd)), "`{cmd} --help` has no example line starting with `{cmd}`:\n{out}");
    }
}

#[test]
fn bash_completion_names_every_subcommand_and_sources_cleanly() {
    let (code, script, err) = meterd(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    for path in subcommands(&[]) {
        let last = path.last().unwrap();
        assert!(script.contains(&format!(" {last} ")) || script.contains(&format!("{last})")), "bash completion lacks {path:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meterd.bash");
    std::fs::write(&file, &script).unwrap();
    let out = Command::new("bash").arg("-c").arg(format!("set -e; source {}; complete -p meterd", file.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-F _meterd meterd"));
    for shell in ["zsh", "fish"] {
        let (code, script, err) = meterd(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(script.contains("backup") && script.contains("set-timezone"), "{shell}: {script}");
    }
    let (code, _, err) = meterd(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
    assert!(err.contains("bash") && err.contains("fish"), "{err}");
}

/// A store option typed for a command that reads no config and opens no store is refused
/// (exit 2) with what the command uses instead (new-user trial: `meterd demo --db x.db` ran on
/// a temporary store without a word); the same options from the environment are fine.
#[test]
fn store_options_typed_for_a_command_that_ignores_them_are_refused() {
    for args in [
        &["demo", "--db", "x.db"][..],
        &["--db", "x.db", "demo"],
        &["completions", "bash", "--config", "meterd.toml"],
        &["man", "--node", "n1"],
        &["mock-store", "--key-env", "MOCK_KEY", "--db", "x.db"],
    ] {
        let (code, out, err) = meterd(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} did nothing: {out}");
        let flag = args.iter().find(|a| a.starts_with("--") && ["--db", "--config", "--node"].contains(a)).unwrap();
        let cmd = args.iter().find(|a| ["demo", "completions", "man", "mock-store"].contains(a)).unwrap();
        assert!(err.contains(&format!("`{flag}` has no effect on `meterd {cmd}` (it ")) && err.contains("drop it"), "{args:?}: {err}");
    }
    let out = Command::new(util::bin())
        .args(["completions", "bash"])
        .env("METERD_DB", "x.db")
        .env("METERD_CONFIG", "meterd.toml")
        .env("METERD_NODE", "n1")
        .output()
        .unwrap();
    assert!(out.status.success(), "exported variables are fine: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("_meterd"));
}

#[test]
fn the_man_page_is_roff_with_every_subcommand() {
    let (code, page, err) = meterd(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.lines().any(|l| l.starts_with(".TH meterd 1")), "{page}");
    for path in subcommands(&[]).into_iter().filter(|p| p.len() == 1) {
        assert!(page.contains(&format!("meterd\\-{}(1)", path[0].replace('-', "\\-"))), "the page lists {}:\n{page}", path[0]);
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = meterd(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for path in subcommands(&[]) {
        let file = dir.path().join(format!("meterd-{}.1", path.join("-")));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(".TH") && text.contains("Examples:"), "{}", file.display());
    }
    let (code, _, err) = meterd(&["man", "--dir", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
}
