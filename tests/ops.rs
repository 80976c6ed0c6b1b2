//! Operations recipes, tried (issue 15, "recipes that work"): the README's install and cron
//! lines run as written (paths moved into a temporary directory) against the systemd unit's
//! paths; key rotation by SIGHUP and after the store refused the key; an online backup taken
//! while another process ingests, restored. Real binary, real SQLite files, real loopback HTTP.

#[path = "util/mod.rs"]
mod util;

#[path = "ops/recipes.rs"]
mod recipes;

#[path = "ops/keys.rs"]
mod keys;

#[path = "ops/backup.rs"]
mod backup;
