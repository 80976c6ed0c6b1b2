//! The deployment examples in `contrib/` stay true: the configuration the Kubernetes manifest
//! embeds loads, and the shared-store systemd unit takes the database URL from an environment
//! file (never from the unit, which `systemctl show` prints to any user).

use meterd::config::Config;

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
