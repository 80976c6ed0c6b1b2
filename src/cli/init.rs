//! `meterd init`: write an example meterd.toml and create the database.
//!
//! The database goes where every later command will look for it: `--db` / `METERD_DB` when
//! given, else `meterd.db` beside the config. A service install passes both (the systemd unit
//! sets `METERD_CONFIG` and `METERD_DB`; the README recipe runs `init` with the same paths) and
//! `--key-file`, which writes `upload.key_file` into the config so that the daemon and cron
//! find the key without any environment. The key file is not read here (it may be installed
//! later); its path must be absolute, since daemons and cron run from another directory.

use super::{Cli, Ctx, Failure};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing config file.
    #[arg(long)]
    force: bool,
    /// Absolute path of the upload key file, written as `upload.key_file` in the config.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8, Failure> {
    let path = cli.config.clone().unwrap_or_else(|| PathBuf::from("meterd.toml"));
    if path.exists() && !args.force {
        return Err(Failure::usage(format!("{} exists; pass --force to overwrite it", path.display())));
    }
    let text = config_text(args.key_file.as_deref())?;
    std::fs::write(&path, text).map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    let ctx = Ctx::load(&Cli {
        config: Some(path.clone()),
        db: cli.db.clone(),
        node: cli.node.clone(),
        log_format: cli.log_format.clone(),
        command: super::Command::Init(Args { force: false, key_file: None }),
    })?;
    // `init` is the operator's explicit "start a database here", even where one was before.
    crate::store::Store::create(&ctx.db).map_err(|e| ctx.open_failure(e))?;
    // On PostgreSQL the database exists already (the operator creates it) and may hold a
    // store: its schema is brought up to date, and nothing in it is touched.
    let done = if crate::store::postgres_url(&ctx.db).is_some() { "prepared the store in" } else { "created" };
    println!("wrote {} and {done} {}", path.display(), crate::store::shown(&ctx.db));
    Ok(0)
}

/// The example config, with `upload.key_file` set when a key file is given.
fn config_text(key_file: Option<&std::path::Path>) -> Result<String, Failure> {
    let text = crate::config::EXAMPLE_CONFIG;
    let Some(key) = key_file else { return Ok(text.to_string()) };
    if !key.is_absolute() {
        return Err(Failure::usage(format!(
            "--key-file {}: give an absolute path (the daemon and cron do not run from this directory)",
            key.display()
        )));
    }
    let key = key.to_str().ok_or_else(|| Failure::usage("--key-file: the path is not valid UTF-8"))?;
    let quoted = toml::Value::String(key.to_string()).to_string();
    let placeholder = "# key_file = \"/etc/meterd/isv.key\"";
    match text.find(placeholder) {
        Some(at) => {
            let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            Ok(format!("{}key_file = {quoted}   # chmod 600, owned by the user meterd runs as{}", &text[..at], &text[end..]))
        }
        None => Err(Failure::runtime("the example config has no key_file line (a build problem)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_written_into_upload() {
        let text = config_text(Some(std::path::Path::new("/etc/meterd/isv.key"))).unwrap();
        let cfg = crate::config::Config::from_toml_str(&text).unwrap();
        assert_eq!(cfg.upload.key_file.as_deref(), Some(std::path::Path::new("/etc/meterd/isv.key")));
        assert!(config_text(Some(std::path::Path::new("isv.key"))).is_err());
        assert_eq!(config_text(None).unwrap(), crate::config::EXAMPLE_CONFIG);
    }
}
