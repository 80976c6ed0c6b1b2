//! `meterd mock-store`: the cloud store's usage API on loopback, for integration tests.

use super::Failure;

pub fn run(args: crate::mockstore::MockStoreArgs) -> Result<u8, Failure> {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| Failure::runtime(e.to_string()))?;
    rt.block_on(crate::mockstore::run_cli(args)).map_err(|e| Failure::runtime(format!("{e:#}")))?;
    Ok(0)
}
