//! What `meterd run` checks before it serves or schedules anything (issue 15): the bearer
//! token variable, the listen address (and whether it may be public), the upload key, the
//! schedules, the database directory, and last that the address can be listened on (a port in
//! use says which and what to do). Every problem here is a configuration problem (exit
//! code 2) whose message names the key or flag to fix; values that need no environment are
//! already checked when the config loads (`config::check`).
//!
//! Also here: the file limit. The daemon raises its soft `RLIMIT_NOFILE` to the hard limit and
//! keeps `server.max_connections` below what that leaves after [`FD_RESERVE`] descriptors for
//! the database connections, logs and refused connections ([`connection_cap`], a pure rule), so
//! a crowd of clients can never take the descriptors the seal loop needs to open the store.

use super::RunOptions;
use crate::config::{listen_addr, Config, Secret};
use crate::schedule::Schedule;
use std::net::SocketAddr;
use std::path::Path;

/// Descriptors kept free of client connections: the store's connections (database, WAL and
/// shared-memory files each), standard streams, the runtime's own, and the refused connections
/// being answered (`server::listen::MAX_REFUSING`).
pub const FD_RESERVE: u64 = 64 + crate::server::listen::MAX_REFUSING as u64;

/// Everything `run` needs, checked.
pub struct Ready {
    /// The config, with `server.max_connections` lowered to what the file limit allows.
    pub cfg: Config,
    /// The bearer token from `server.token_env`, if set (a [`Secret`]: never shown, wiped on drop).
    pub token: Option<Secret>,
    pub key: Option<Secret>,
    pub listen: SocketAddr,
    /// The listening socket, bound to `listen` last of all checks, so that an address in use
    /// is a configuration error too (exit 2, naming the port) and nothing else holds it.
    pub listener: std::net::TcpListener,
    pub seal: Schedule,
    pub upload: Schedule,
}

/// Checks what `run` needs; the first problem, naming the key to fix.
pub fn prepare(cfg: &Config, db: &Path, opts: &RunOptions) -> Result<Ready, String> {
    let token = token(cfg)?;
    let (listen, fix) = match &opts.listen {
        Some(flag) => (listen_addr("--listen", flag)?, "--listen"),
        None => (listen_addr("server.listen", &cfg.server.listen)?, "--listen or `server.listen`"),
    };
    public_check(cfg, listen, token.is_some())?;
    let key = crate::upload::run::load_key(&cfg.upload)?;
    let seal = cfg.schedule.seal.parse().map_err(|e| format!("`schedule.seal`: {e}"))?;
    let upload = cfg.schedule.upload.parse().map_err(|e| format!("`schedule.upload`: {e}"))?;
    check_db_dir(db)?;
    let mut cfg = cfg.clone();
    if let Some(nofile) = raise_nofile() {
        let (cap, lowered) = connection_cap(cfg.server.max_connections, nofile);
        if lowered {
            tracing::warn!(
                "`server.max_connections` = {} does not fit the file limit ({nofile} descriptors, {FD_RESERVE} kept for the store and logs); \
                 serving at most {cap} connections — raise the limit (systemd: LimitNOFILE) or lower the setting",
                cfg.server.max_connections
            );
        }
        cfg.server.max_connections = cap;
    }
    let listener = bind(listen, fix)?;
    Ok(Ready { cfg, token, key, listen, listener, seal, upload })
}

/// Binds `listen` (non-blocking, for the runtime to take over); a failure names the port and
/// `fix`, the flag or key that sets it.
fn bind(listen: SocketAddr, fix: &str) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(listen).map_err(|e| crate::server::listen::bind_error(listen, fix, &e))?;
    l.set_nonblocking(true).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    Ok(l)
}

/// The bearer token from `server.token_env`: set, non-empty, and sendable as a header value.
fn token(cfg: &Config) -> Result<Option<Secret>, String> {
    let Some(var) = &cfg.server.token_env else { return Ok(None) };
    let value = std::env::var(var).map_err(|e| match e {
        std::env::VarError::NotPresent => {
            format!("`server.token_env` names {var}, which is not set; export the bearer token in {var}, or remove `server.token_env`")
        }
        std::env::VarError::NotUnicode(_) => format!("`server.token_env`: {var} is not valid UTF-8"),
    })?;
    if value.trim().is_empty() {
        return Err(format!(
            "`server.token_env` names {var}, which is empty: every request would be refused; put the bearer token in {var}"
        ));
    }
    if value.trim() != value || value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`server.token_env`: the token in {var} has spaces or control characters at its ends or inside, which no client can send; remove them"
        ));
    }
    Ok(Some(Secret::new(value.into_bytes())))
}

/// A non-loopback address without a token lets anyone who reaches the port post usage: refused
/// unless `server.allow_public_without_token` says it is intended (then a warning).
fn public_check(cfg: &Config, listen: SocketAddr, has_token: bool) -> Result<(), String> {
    if listen.ip().is_loopback() || has_token {
        return Ok(());
    }
    if !cfg.server.allow_public_without_token {
        return Err(format!(
            "`server.listen` = {listen} is reachable from other machines and no `server.token_env` is set: anyone could post usage. \
             Set `server.token_env` (recommended), listen on 127.0.0.1, or set `server.allow_public_without_token = true` if a firewall guards the port"
        ));
    }
    tracing::warn!(%listen, "listening on a non-loopback address without a bearer token (server.allow_public_without_token = true)");
    Ok(())
}

/// The database's directory must exist: meterd creates the file, never the directory (a
/// missing one is usually a wrong path or an unmounted volume).
pub fn check_db_dir(db: &Path) -> Result<(), String> {
    if crate::store::postgres_url(db).is_some() {
        return Ok(()); // a server, not a file: reachability is checked by connecting
    }
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if dir.is_dir() {
        return Ok(());
    }
    Err(format!(
        "the database directory {} does not exist (database {}); create it, or point --db / METERD_DB at the right place",
        dir.display(),
        db.display()
    ))
}

/// Connections that fit `nofile` descriptors: `configured`, lowered to leave [`FD_RESERVE`]
/// (at least 1); whether it was lowered.
pub fn connection_cap(configured: usize, nofile: u64) -> (usize, bool) {
    let room = usize::try_from(nofile.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if configured > room {
        (room, true)
    } else {
        (configured, false)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force after.
#[cfg(unix)]
pub fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not on every unix
    let soft = u64::try_from(lim.rlim_cur).unwrap_or(u64::MAX);
    tracing::debug!(nofile = soft, hard = lim.rlim_max, "file limit (soft raised to hard)");
    Some(soft)
}

#[cfg(not(unix))]
pub fn raise_nofile() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_the_store() {
        assert_eq!(connection_cap(1024, 65_536), (1024, false));
        assert_eq!(connection_cap(1024, 1024), (1024 - FD_RESERVE as usize, true));
        assert_eq!(connection_cap(10, 20), (1, true));
    }

    #[test]
    fn public_without_token_is_refused_unless_allowed() {
        let mut cfg = Config::default();
        let public: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let err = public_check(&cfg, public, false).unwrap_err();
        assert!(err.contains("server.allow_public_without_token"), "{err}");
        assert!(public_check(&cfg, public, true).is_ok());
        assert!(public_check(&cfg, "127.0.0.1:1".parse().unwrap(), false).is_ok());
        cfg.server.allow_public_without_token = true;
        assert!(public_check(&cfg, public, false).is_ok());
    }

    #[test]
    fn a_missing_database_directory_is_named() {
        let err = check_db_dir(Path::new("/nonexistent-meterd-dir/x/meterd.db")).unwrap_err();
        assert!(err.contains("database directory /nonexistent-meterd-dir/x does not exist"), "{err}");
        assert!(check_db_dir(Path::new("meterd.db")).is_ok());
    }
}
