//! Sweeping: what reads no longer show is removed from storage, at a
//! bounded rate, once a retention period has passed.
//!
//! - An **expired value** whose expiration is older than the retention is
//!   replaced by a tombstone, with a compare-and-swap against the object the
//!   sweep read (so a write that landed meanwhile is left alone). That frees
//!   the value's bytes and keeps the key's version.
//! - A **tombstone** older than the retention (its version's clock time) is
//!   deleted on condition that it is still the object the sweep read: on S3
//!   with `If-Match` ([`crate::store::Store::delete_if_unchanged`]), on a
//!   local directory under the key's lock (this process is its only writer).
//!   On a shared store without a conditional delete (GCS and Azure through
//!   `object_store`, memory), an unconditional one could remove a write that
//!   another origin process made just before it: there, tombstones are kept
//!   (they are small) and counted as kept.
//!
//! The retention (a day by default) is far longer than any write's deadline
//! and than the write-id window, so nothing a retry or a late write relies on
//! is swept. After a tombstone is gone, a new write of the key starts from
//! the clock again; the retention bounds how far a clock may step back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kv_runtime::deadline::Deadline;
use kv_runtime::metrics::Metrics;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;

use crate::envelope::{self, Object};
use crate::error::OriginError;
use crate::hlc::version_millis;
use crate::origin::{Change, Origin, decode_stored_head};
use crate::store::{DeleteOutcome, Precondition, PutOutcome};

/// When and how fast to sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepOptions {
    /// How long a tombstone or an expired value is kept.
    pub retention: Duration,
    /// The pause between two passes over the store.
    pub interval: Duration,
    /// Most objects examined per second.
    pub max_per_sec: u32,
    /// The time one object's examination may take.
    pub call_timeout: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(86_400),
            interval: Duration::from_secs(3_600),
            max_per_sec: 100,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects looked at.
    pub examined: u64,
    /// Expired values replaced by tombstones.
    pub expired: u64,
    /// Tombstones deleted.
    pub removed: u64,
    /// Tombstones past their retention kept, because the store is shared.
    pub kept: u64,
}

/// What the sweep did with one object.
enum Outcome {
    Untouched,
    Expired,
    Removed,
    Kept,
}

/// Sweeps every `options.interval` until `stop` is cancelled.
pub async fn run(
    origin: Arc<Origin>,
    options: SweepOptions,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let counters = metrics.swept();
    loop {
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            () = stop.cancelled() => return,
        }
        let pass = tokio::select! {
            pass = origin.sweep(&options) => pass,
            () = stop.cancelled() => return,
        };
        match pass {
            Ok(report) => {
                counters.expired.inc_by(report.expired);
                counters.removed.inc_by(report.removed);
                counters.kept.inc_by(report.kept);
                tracing::info!(?report, "sweep pass done");
            }
            Err(e) => tracing::warn!(error = %e, "sweep pass stopped; the next one starts over"),
        }
    }
}

impl Origin {
    /// One pass over every object in the store.
    pub async fn sweep(&self, options: &SweepOptions) -> Result<SweepReport, OriginError> {
        let mut report = SweepReport::default();
        let pace = Duration::from_secs(1) / options.max_per_sec.max(1);
        let root = self.layout.root().clone();
        let listed = Deadline::after(Duration::from_secs(86_400));
        let mut listing = self.store.list_after(&root, &root, &listed);
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if self.layout.locate(&meta.location).is_none() {
                continue;
            }
            report.examined += 1;
            let deadline = Deadline::after(options.call_timeout);
            match self.sweep_object(&meta.location, options, &deadline).await {
                Ok(Outcome::Untouched) => {}
                Ok(Outcome::Expired) => report.expired += 1,
                Ok(Outcome::Removed) => report.removed += 1,
                Ok(Outcome::Kept) => report.kept += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "could not sweep an object; left for the next pass")
                }
            }
            tokio::time::sleep(pace).await;
        }
        Ok(report)
    }

    async fn sweep_object(
        &self,
        path: &Path,
        options: &SweepOptions,
        deadline: &Deadline,
    ) -> Result<Outcome, OriginError> {
        let Some((_, key)) = self.layout.locate(path) else {
            return Ok(Outcome::Untouched);
        };
        let now_millis = self.clock.now_millis();
        let retention = u64::try_from(options.retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff_millis = now_millis.saturating_sub(retention);
        // Under the key's lock on a store this process alone writes; a
        // compare-and-swap does without it.
        let _guard = match self.store.compares_and_swaps() {
            true => None,
            false => Some(self.lock(path).await),
        };
        let head_len = envelope::MAX_HEAD_LEN as u64;
        let Some((bytes, version)) = self.store.get_head(path, head_len, deadline).await? else {
            return Ok(Outcome::Untouched);
        };
        let head = decode_stored_head(path, &key, &bytes)?;
        if head.tombstone {
            if version_millis(head.version) > cutoff_millis {
                return Ok(Outcome::Untouched);
            }
            return Ok(
                match self
                    .store
                    .delete_if_unchanged(path, &version, deadline)
                    .await?
                {
                    DeleteOutcome::Deleted => Outcome::Removed,
                    // A write landed since the read: it is not ours to sweep.
                    DeleteOutcome::Changed => Outcome::Untouched,
                    DeleteOutcome::Unsupported => Outcome::Kept,
                },
            );
        }
        let expired_long_ago = head
            .expiration
            .is_some_and(|at| at.saturating_mul(1000) <= cutoff_millis);
        if !expired_long_ago {
            return Ok(Outcome::Untouched);
        }
        let tombstone: Object = self.next_object(
            &key,
            kv_proto::WriteId::random(),
            &Change::Delete,
            Some(head),
        );
        let (encoded, value) = envelope::encode(&tombstone);
        let written = self
            .store
            .put_if(
                path,
                vec![encoded, value],
                Precondition::Unchanged(version),
                deadline,
            )
            .await?;
        Ok(match written {
            PutOutcome::Written => Outcome::Expired,
            // A write landed since the read: it is not ours to sweep.
            PutOutcome::Conflict => Outcome::Untouched,
        })
    }
}
