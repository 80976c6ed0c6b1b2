//! `meterd mock-store`: the cloud store's usage API on loopback, for integration tests. A
//! configuration problem found before it serves (the `--key-env` variable unset, an unreadable
//! file, an address in use) is exit code 2 with what to fix; a failure while serving is 3.

use super::Failure;
use crate::mockstore::cli::ServeError;

pub fn run(args: crate::mockstore::MockStoreArgs) -> Result<u8, Failure> {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| Failure::runtime(e.to_string()))?;
    rt.block_on(crate::mockstore::run_cli(args)).map_err(|e| match e {
        ServeError::Config(e) => Failure::usage(format!("{e:#}")),
        ServeError::Runtime(e) => Failure::runtime(format!("{e:#}")),
    })?;
    Ok(0)
}
