//! `meterd upload [--now TIME] [--dry-run]`: deliver pending records to the cloud store.
//! Exit 0 when everything sent was delivered; 1 when some records were rejected or expired;
//! 2 when the store refused the configuration (wrong key, endpoint, account) or no key is set;
//! 3 when transient failures outlasted a batch's retry budget (the run stops at that batch;
//! it and every later record stay queued, and the next run resends it first). A failure of
//! the local store during the run ends it by the failure's kind, as in every command
//! ([`super::ExitKind`] from [`crate::store::ErrorKind`]): bad input or configuration (e.g. a
//! refused TLS certificate on reconnecting) 2, unavailable or internal 3, the sealer lease lost
//! to another node 4.

use super::{now_or, Ctx, Failure};
use crate::model::Timestamp;
use crate::store::{batches, records};
use crate::upload::run::{load_key, upload, UploadError, MAX_RECORD_AGE_SECS};
use crate::upload::{new_nonce, request_url, signature};
use std::sync::{Arc, Mutex};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Judge record expiry against this instant (request timestamps always use the clock).
    #[arg(long, value_parser = super::timestamp)]
    now: Option<Timestamp>,
    /// Print the bodies and signatures that would be sent; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8, Failure> {
    let now = now_or(args.now);
    let key = load_key(&ctx.cfg.upload).map_err(Failure::usage)?.ok_or_else(|| {
        Failure::usage("no upload key: set METERD_ISV_KEY or `upload.key_file` (the interconnection key from Seller Console)")
    })?;
    if args.dry_run {
        return dry_run(&mut ctx.store()?, ctx, &key, now);
    }
    let store = Arc::new(Mutex::new(ctx.store_for_sealing()?));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Failure::runtime(e.to_string()))?;
    let report = rt.block_on(upload(store.clone(), &ctx.cfg.upload, &key, now));
    Ctx::release_lease(&mut crate::store::lock_recovering(&store, "upload"));
    let report = report.map_err(failure)?;
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    if let Some(e) = &report.config_error {
        return Err(Failure::usage(e.clone()));
    }
    if let Some(e) = &report.transient_error {
        return Err(Failure::runtime(e.clone()));
    }
    Ok(if report.rejected + report.expired > 0 { 1 } else { 0 })
}

/// How a failed upload run ends: the store refusing our configuration is exit 2; a failure
/// of the local store by its kind (see the module docs).
fn failure(e: UploadError) -> Failure {
    match e {
        UploadError::Config(m) => Failure::usage(m),
        UploadError::Store(s) => s.into(),
    }
}

/// Shows exactly what a real run at `now` would do: it refuses the endpoints a real run
/// refuses, and leaves out the records a real run would reject as expired (counting them).
fn dry_run(store: &mut crate::store::Store, ctx: &Ctx, key: &crate::config::Secret, now: Timestamp) -> Result<u8, Failure> {
    let cfg = &ctx.cfg.upload;
    let url = request_url(&cfg.endpoint, &cfg.path).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(f) = &cfg.fallback {
        request_url(f, &cfg.path).map_err(|e| Failure::usage(e.to_string().replace("upload.endpoint", "upload.fallback")))?;
    }
    let (open, pending) = store.read(|tx| Ok((batches::open(tx)?, records::pending(tx, usize::MAX >> 1)?)))?;
    let cutoff = now.secs() - MAX_RECORD_AGE_SECS;
    let (expired, pending): (Vec<_>, Vec<_>) = pending.into_iter().partition(|r| r.begin < cutoff);
    let mut bodies: Vec<Vec<u8>> = open.into_iter().map(|b| b.body).collect();
    for chunk in pending.chunks(cfg.batch_size) {
        let parts: Vec<&[u8]> = chunk.iter().map(|r| r.body.as_slice()).collect();
        bodies.push(crate::upload::body::join_records(&parts));
    }
    for body in &bodies {
        let ts = Timestamp::now().0 / 1_000_000;
        let nonce = new_nonce();
        let sig = signature(key, ts, &nonce, body);
        println!("POST {url}");
        println!("ts: {ts}\nnonce: {nonce}\nsignature: {sig}");
        println!("{}\n", String::from_utf8_lossy(body));
    }
    eprintln!(
        "dry run: {} request(s) would be sent; {} record(s) would be rejected as expired; nothing changed",
        bodies.len(),
        expired.len()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// A store failure during an upload ends it by its kind, as in the other commands: bad
    /// input 2 (not "runtime" 3), unavailable 3, a lost lease 4.
    #[test]
    fn store_failures_of_an_upload_map_by_kind() {
        let cases = [
            (UploadError::Store(StoreError::Invalid("bad".into())), 2),
            (UploadError::Store(StoreError::Tls("certificate refused".into())), 2),
            (UploadError::Store(StoreError::Busy), 3),
            (UploadError::Store(StoreError::Internal("bug".into())), 3),
            (UploadError::Store(StoreError::Fenced { lease: "sealer".into(), ours: 1, holder: "b".into(), epoch: 2 }), 4),
            (UploadError::Config("the store refused the key".into()), 2),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            let f = failure(e);
            assert_eq!(f.code(), want, "{shown}");
            assert_eq!(f.message, shown);
        }
    }
}
