//! The publishing side of a feed: numbered events in a bounded backlog.
//!
//! Each publisher has an epoch, drawn at random when it starts, and numbers
//! its events from 0 within it. The newest `capacity` events stay in the
//! backlog, so that a subscriber that reconnects can resume where it left
//! off; one that asks for an event the backlog no longer holds (or another
//! epoch's) is told of the gap instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use kv_proto::{Change, Cursor, FeedEvent};
use tokio::sync::watch;

use crate::metrics::FeedMetrics;

/// Events a backlog holds unless configured otherwise.
pub const DEFAULT_BACKLOG: usize = 65_536;
/// Bytes of encoded events a backlog holds at most, whatever its event
/// count: inline values make events up to 64 KiB each.
pub const BACKLOG_BYTES: usize = 64 * 1024 * 1024;

/// Most events one [`Subscription::next`] hands out at once.
const BATCH: usize = 256;

/// A feed publisher. Cheap to share; publishing never waits on subscribers.
#[derive(Debug)]
pub struct Publisher {
    epoch: u64,
    backlog: Mutex<Backlog>,
    /// The sequence number the next event will get.
    next_seq: watch::Sender<u64>,
    subscribers: std::sync::atomic::AtomicUsize,
    metrics: FeedMetrics,
}

/// An event as published: encoded once, written to every subscriber.
#[derive(Debug)]
pub struct Published {
    /// The event.
    pub event: FeedEvent,
    /// Its frame, header included.
    pub frame: Bytes,
}

impl Published {
    fn new(event: FeedEvent) -> Arc<Self> {
        let mut frame = BytesMut::new();
        kv_proto::encode_feed_event(&event, &mut frame);
        Arc::new(Self {
            event,
            frame: frame.freeze(),
        })
    }
}

#[derive(Debug)]
struct Backlog {
    /// The sequence number of `events[0]`.
    first_seq: u64,
    events: VecDeque<Arc<Published>>,
    /// Bytes of the encoded events held.
    bytes: usize,
    capacity: usize,
}

impl Backlog {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
}

impl Publisher {
    /// A publisher with a new epoch, keeping the newest `capacity` events
    /// (at least one, and no more than [`BACKLOG_BYTES`] of them), counting
    /// in `metrics`.
    pub fn new(capacity: usize, metrics: FeedMetrics) -> Arc<Self> {
        Arc::new(Self {
            epoch: kv_proto::RequestId::random().0,
            backlog: Mutex::new(Backlog {
                first_seq: 0,
                events: VecDeque::with_capacity(capacity.clamp(1, 4096)),
                bytes: 0,
                capacity: capacity.max(1),
            }),
            next_seq: watch::Sender::new(0),
            subscribers: Default::default(),
            metrics,
        })
    }

    /// This publisher's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Subscriptions open right now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Publishes a write or delete.
    pub fn publish(&self, change: Change) {
        self.push(|seq| FeedEvent::Change { seq, change });
    }

    /// Tells subscribers that this publisher lost events from upstream.
    pub fn resync(&self) {
        self.push(|seq| FeedEvent::Resync { seq });
    }

    fn push(&self, event: impl FnOnce(u64) -> FeedEvent) {
        let mut backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = backlog.next_seq();
        let published = Published::new(event(seq));
        backlog.bytes += published.frame.len();
        backlog.events.push_back(published);
        while backlog.events.len() > backlog.capacity
            || (backlog.bytes > BACKLOG_BYTES && backlog.events.len() > 1)
        {
            let Some(dropped) = backlog.events.pop_front() else {
                break;
            };
            backlog.bytes -= dropped.frame.len();
            backlog.first_seq += 1;
        }
        // Under the lock, so subscribers see sequence numbers in order.
        self.next_seq.send_replace(seq + 1);
        drop(backlog);
        self.metrics.published.inc();
    }

    /// A subscription resuming at `resume` when the backlog still holds
    /// everything from there, and otherwise starting now. The first event to
    /// send is its [`FeedEvent::Sync`].
    pub fn subscribe(self: &Arc<Self>, resume: Option<Cursor>) -> (FeedEvent, Subscription) {
        let backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
        let next = backlog.next_seq();
        let cursor = resume
            .filter(|c| c.epoch == self.epoch && (backlog.first_seq..=next).contains(&c.next_seq))
            .map(|c| c.next_seq);
        let sync = FeedEvent::Sync {
            epoch: self.epoch,
            next_seq: cursor.unwrap_or(next),
            gap: cursor.is_none(),
        };
        drop(backlog);
        self.metrics.subscribers.inc();
        self.subscribers
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let subscription = Subscription {
            publisher: self.clone(),
            cursor: cursor.unwrap_or(next),
            changes: self.next_seq.subscribe(),
        };
        (sync, subscription)
    }
}

/// One subscriber's place in a feed.
#[derive(Debug)]
pub struct Subscription {
    publisher: Arc<Publisher>,
    cursor: u64,
    changes: watch::Receiver<u64>,
}

impl Subscription {
    /// The next events, waiting until there is at least one. A subscriber
    /// that fell behind the backlog gets a [`FeedEvent::Sync`] with a gap,
    /// and continues from the newest event.
    pub async fn next(&mut self) -> Vec<Arc<Published>> {
        loop {
            let next = *self.changes.borrow_and_update();
            if self.cursor < next {
                return self.take();
            }
            if self.changes.changed().await.is_err() {
                // The publisher is gone: nothing more will come.
                return std::future::pending().await;
            }
        }
    }

    fn take(&mut self) -> Vec<Arc<Published>> {
        let publisher = &self.publisher;
        let backlog = publisher
            .backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.cursor < backlog.first_seq {
            self.cursor = backlog.next_seq();
            publisher.metrics.overrun.inc();
            return vec![Published::new(FeedEvent::Sync {
                epoch: publisher.epoch,
                next_seq: self.cursor,
                gap: true,
            })];
        }
        let start = (self.cursor - backlog.first_seq) as usize;
        let batch: Vec<_> = backlog.events.range(start..).take(BATCH).cloned().collect();
        self.cursor += batch.len() as u64;
        batch
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.publisher.metrics.subscribers.dec();
        self.publisher
            .subscribers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use kv_proto::{Key, Namespace};

    use super::*;
    use crate::metrics::Metrics;

    fn change(version: u64) -> Change {
        Change {
            namespace: Namespace::new("ns").expect("valid namespace"),
            key: Key::new("k").expect("valid key"),
            version,
            tombstone: false,
            expiration: None,
            commit_ms: 1,
            value: None,
        }
    }

    fn seqs(events: &[Arc<Published>]) -> Vec<Option<u64>> {
        events.iter().map(|e| e.event.seq()).collect()
    }

    #[tokio::test]
    async fn a_subscriber_resumes_within_the_backlog() {
        let feed = Publisher::new(4, Metrics::new().feed("origin"));
        let (sync, mut first) = feed.subscribe(None);
        assert!(matches!(
            sync,
            FeedEvent::Sync {
                gap: true,
                next_seq: 0,
                ..
            }
        ));
        feed.publish(change(1));
        feed.resync();
        assert_eq!(seqs(&first.next().await), [Some(0), Some(1)]);
        feed.publish(change(2));
        let resume = Cursor {
            epoch: feed.epoch(),
            next_seq: 1,
        };
        let (sync, mut again) = feed.subscribe(Some(resume));
        assert!(matches!(
            sync,
            FeedEvent::Sync {
                gap: false,
                next_seq: 1,
                ..
            }
        ));
        assert_eq!(seqs(&again.next().await), [Some(1), Some(2)]);
    }

    #[tokio::test]
    async fn another_epoch_or_a_cursor_past_the_backlog_is_a_gap() {
        let feed = Publisher::new(2, Metrics::new().feed("origin"));
        for v in 0..5 {
            feed.publish(change(v));
        }
        let old = Cursor {
            epoch: feed.epoch(),
            next_seq: 2,
        };
        let (sync, _) = feed.subscribe(Some(old));
        assert!(matches!(
            sync,
            FeedEvent::Sync {
                gap: true,
                next_seq: 5,
                ..
            }
        ));
        let other_epoch = Cursor {
            epoch: feed.epoch() ^ 1,
            next_seq: 4,
        };
        assert!(matches!(
            feed.subscribe(Some(other_epoch)).0,
            FeedEvent::Sync { gap: true, .. }
        ));
        let ahead = Cursor {
            epoch: feed.epoch(),
            next_seq: 9,
        };
        assert!(matches!(
            feed.subscribe(Some(ahead)).0,
            FeedEvent::Sync { gap: true, .. }
        ));
    }

    #[test]
    fn the_backlog_is_bounded_in_bytes_too() {
        let feed = Publisher::new(1_000_000, Metrics::new().feed("origin"));
        let big = |version| Change {
            value: Some(kv_proto::InlineValue {
                metadata: None,
                value: bytes::Bytes::from(vec![7u8; 64 * 1024]),
            }),
            ..change(version)
        };
        for v in 0..2_000 {
            feed.publish(big(v));
        }
        let backlog = feed.backlog.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            backlog.bytes <= BACKLOG_BYTES,
            "{} bytes held",
            backlog.bytes
        );
        assert!(backlog.events.len() < 2_000 && backlog.events.len() > 900);
        assert_eq!(backlog.next_seq(), 2_000);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_of_the_gap() {
        let feed = Publisher::new(2, Metrics::new().feed("origin"));
        let (_, mut slow) = feed.subscribe(None);
        for v in 0..5 {
            feed.publish(change(v));
        }
        let events = slow.next().await;
        assert!(
            matches!(
                events[0].event,
                FeedEvent::Sync {
                    gap: true,
                    next_seq: 5,
                    ..
                }
            ),
            "{events:?}"
        );
        feed.publish(change(9));
        assert_eq!(seqs(&slow.next().await), [Some(5)]);
    }
}
