//! Serving one subscription: the publisher's events, written to the
//! subscriber's stream in order, until either side stops.

use std::sync::Arc;

use bytes::BytesMut;
use kv_proto::Subscribe;
use tokio_util::sync::CancellationToken;

use super::publisher::Publisher;

/// Writes the feed to `send`, starting where `subscribe` asks, until the
/// subscriber stops reading, the connection goes, or `stop` (shutdown).
/// A subscriber that reads too slowly blocks only its own stream; when it
/// catches up past the backlog it is told of the gap.
pub async fn serve_subscription(
    publisher: &Arc<Publisher>,
    subscribe: Subscribe,
    mut send: quinn::SendStream,
    stop: CancellationToken,
) {
    let (sync, mut subscription) = publisher.subscribe(subscribe.resume);
    let mut first = BytesMut::new();
    kv_proto::encode_feed_event(&sync, &mut first);
    if send.write_chunk(first.freeze()).await.is_err() {
        return;
    }
    tracing::debug!(?sync, "feed subscriber joined");
    loop {
        let events = tokio::select! {
            events = subscription.next() => events,
            _ = send.stopped() => return,
            () = stop.cancelled() => {
                let _ = send.finish();
                return;
            }
        };
        let mut frames: Vec<_> = events.iter().map(|e| e.frame.clone()).collect();
        let written = tokio::select! {
            written = send.write_all_chunks(&mut frames) => written,
            () = stop.cancelled() => return,
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "feed subscriber gone");
            return;
        }
    }
}
