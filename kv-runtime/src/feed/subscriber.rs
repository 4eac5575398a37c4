//! The subscribing side of a feed: one task per upstream node, following its
//! feed for as long as the tier runs.
//!
//! The task reconnects whenever the stream ends, asking to resume after the
//! last event it applied. Every change goes to the tier's [`FeedSink`]; a
//! gap (the publisher restarted, or dropped events this subscriber had not
//! read yet) or a resync the publisher relays makes the sink distrust what
//! it cached ([`FeedSink::resync`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kv_proto::{Change, Cursor, FeedEvent, Frame, FrameKind, Subscribe};
use tokio_util::sync::CancellationToken;

use crate::metrics::FeedMetrics;
use crate::quic::Link;
use crate::quic::frames::{read_frame_body, write_frame};
use crate::time::unix_millis;

/// What a tier does with its feeds.
pub trait FeedSink: Send + Sync + 'static {
    /// Applies a write or delete to the tier's caches (and relays it, for a
    /// tier with subscribers of its own). Says whether it was news: a tier
    /// that follows several nodes hears of each change from each, and only
    /// the first arrival makes it visible.
    fn apply(&self, change: Change) -> impl Future<Output = bool> + Send;

    /// Events may have been missed: cached copies fetched until now must be
    /// checked upstream before they are served again (and subscribers of
    /// this tier told so).
    fn resync(&self);
}

/// The shortest and longest pause before reconnecting.
const RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Follows the feed of the node at the end of `link`, applying it to `sink`,
/// until `stop`.
pub async fn follow<S: FeedSink>(
    link: Link,
    sink: Arc<S>,
    metrics: FeedMetrics,
    stop: CancellationToken,
) {
    let peer = link.peer().to_string();
    let connected = metrics.connected(&peer);
    let mut cursor: Option<Cursor> = None;
    let mut pause = RETRY.0;
    while !stop.is_cancelled() {
        let followed = tokio::select! {
            followed = follow_once(&link, &*sink, &metrics, &connected, &mut cursor) => followed,
            () = stop.cancelled() => break,
        };
        connected.set(false);
        match followed {
            // It ran for a while: the next try may well work at once.
            Ok(()) => pause = RETRY.0,
            Err(why) => {
                tracing::debug!(%peer, %why, "feed subscription failed");
                pause = (pause * 2).min(RETRY.1);
            }
        }
        let jitter = pause.mul_f64(0.5 + (kv_proto::RequestId::random().0 % 500) as f64 / 1000.0);
        tokio::select! {
            () = tokio::time::sleep(jitter) => {}
            () = stop.cancelled() => break,
        }
    }
    connected.set(false);
}

/// One subscription, from its request to the end of its stream. `Ok` when
/// it was established and later ended; an error when it never was.
async fn follow_once<S: FeedSink>(
    link: &Link,
    sink: &S,
    metrics: &FeedMetrics,
    connected: &crate::metrics::FollowingGauge,
    cursor: &mut Option<Cursor>,
) -> Result<(), String> {
    let (mut send, mut recv) = link.open_stream().await.map_err(|e| e.to_string())?;
    let subscribe = Subscribe { resume: *cursor };
    write_frame(&mut send, &Frame::Subscribe(subscribe))
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let mut established = false;
    loop {
        let body = match read_frame_body(&mut recv, FrameKind::Feed).await {
            Ok(body) => body,
            Err(e) if established => {
                tracing::debug!(peer = %link.peer(), error = %e, "feed ended");
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        let event = match kv_proto::decode_feed_event(body) {
            Ok(event) => event,
            Err(e) => {
                // Continuity can no longer be vouched for: start afresh.
                *cursor = None;
                return Err(format!("bad feed event: {e}"));
            }
        };
        match event {
            FeedEvent::Sync {
                epoch,
                next_seq,
                gap,
            } => {
                if gap {
                    metrics.gaps.inc();
                    metrics.resyncs.inc();
                    sink.resync();
                    tracing::info!(peer = %link.peer(), epoch, resumed_from = ?cursor, "feed has a gap: cached copies will be revalidated");
                }
                *cursor = Some(Cursor { epoch, next_seq });
                if !established {
                    established = true;
                    connected.set(true);
                }
            }
            FeedEvent::Change { seq, change } => {
                advance(cursor, seq)?;
                let commit_ms = change.commit_ms;
                let news = sink.apply(change).await;
                metrics.applied.inc();
                // The lag of the arrival that made the change visible here.
                if news {
                    let lag_ms = unix_millis().saturating_sub(commit_ms);
                    metrics.lag.observe(lag_ms as f64 / 1000.0);
                }
            }
            FeedEvent::Resync { seq } => {
                advance(cursor, seq)?;
                metrics.resyncs.inc();
                sink.resync();
            }
        }
    }
}

/// Moves the cursor past event `seq`, which must be the one it expects.
fn advance(cursor: &mut Option<Cursor>, seq: u64) -> Result<(), String> {
    match cursor {
        Some(c) if c.next_seq == seq => {
            c.next_seq += 1;
            Ok(())
        }
        _ => {
            let message = format!("feed event {seq} out of order (cursor {cursor:?})");
            *cursor = None;
            Err(message)
        }
    }
}
