//! The change feed: what a tier pushes to the tiers below it.
//!
//! A subscriber opens a bidirectional stream and sends one [`Subscribe`]
//! frame, naming where it left off if it was subscribed before. The
//! publisher answers on the same stream with [`FeedEvent`] frames until
//! either side stops:
//!
//! - first a [`FeedEvent::Sync`]: the publisher's epoch and the sequence
//!   number of the next event, and whether the events since the subscriber's
//!   cursor follow (`gap: false`) or were lost (`gap: true`: a new epoch, or
//!   a cursor older than the publisher's backlog). It is sent again, with
//!   `gap: true`, when a subscriber falls behind the backlog;
//! - then each [`FeedEvent::Change`] (a write or delete) and
//!   [`FeedEvent::Resync`] (the publisher itself lost events from upstream),
//!   numbered consecutively within the epoch.
//!
//! After a gap, a subscriber must not trust what it cached before: it
//! revalidates or drops those copies.

use bytes::{BufMut, Bytes};

use crate::cmd::put::read_optional_metadata;
use crate::error::ProtoError;
use crate::limits::MAX_INLINE_VALUE;
use crate::types::{Key, Metadata, Namespace};
use crate::wire::{self, Reader};

/// A position in a publisher's feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The publisher's epoch: a new one at each publisher start.
    pub epoch: u64,
    /// The sequence number of the next event wanted.
    pub next_seq: u64,
}

/// A subscriber's request for the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Where the subscriber left off; `None` for a first subscription.
    pub resume: Option<Cursor>,
}

const HAS_RESUME: u8 = 0b1;

impl Subscribe {
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        buf.put_u8(if self.resume.is_some() { HAS_RESUME } else { 0 });
        if let Some(cursor) = self.resume {
            buf.put_u64(cursor.epoch);
            buf.put_u64(cursor.next_seq);
        }
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let flags = wire::check_flags(r.u8("subscribe flags")?, HAS_RESUME, "subscribe")?;
        let resume = match flags {
            0 => None,
            _ => Some(Cursor {
                epoch: r.u64("epoch")?,
                next_seq: r.u64("next_seq")?,
            }),
        };
        Ok(Self { resume })
    }
}

/// A value small enough to travel in its change, so caches can replace
/// their copy rather than drop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineValue {
    /// User metadata.
    pub metadata: Option<Metadata>,
    /// The value, at most [`MAX_INLINE_VALUE`] bytes.
    pub value: Bytes,
}

/// An acknowledged write or delete of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The namespace.
    pub namespace: Namespace,
    /// The key.
    pub key: Key,
    /// The write's version: caches drop or replace any older copy.
    pub version: u64,
    /// Whether this is a delete.
    pub tombstone: bool,
    /// When the written value expires, unix seconds.
    pub expiration: Option<u64>,
    /// When the origin acknowledged the write, unix milliseconds, so each
    /// tier can measure how long the change took to reach it.
    pub commit_ms: u64,
    /// The written value, when it is small enough to travel inline (never
    /// for a delete).
    pub value: Option<InlineValue>,
}

const TOMBSTONE: u8 = 0b0001;
const HAS_EXPIRATION: u8 = 0b0010;
const HAS_VALUE: u8 = 0b0100;
const HAS_METADATA: u8 = 0b1000;

impl Change {
    fn encode(&self, buf: &mut impl BufMut) {
        crate::cmd::put_target(buf, &self.namespace, &self.key);
        buf.put_u64(self.version);
        buf.put_u64(self.commit_ms);
        let mut flags = 0;
        if self.tombstone {
            flags |= TOMBSTONE;
        }
        if self.expiration.is_some() {
            flags |= HAS_EXPIRATION;
        }
        if let Some(inline) = &self.value {
            flags |= HAS_VALUE;
            if inline.metadata.is_some() {
                flags |= HAS_METADATA;
            }
        }
        buf.put_u8(flags);
        wire::put_optional_u64(buf, self.expiration);
        if let Some(inline) = &self.value {
            if let Some(metadata) = &inline.metadata {
                wire::put_bytes16(buf, metadata.as_bytes());
            }
            buf.put_u32(u32::try_from(inline.value.len()).unwrap_or(u32::MAX));
            buf.put_slice(&inline.value);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = crate::cmd::read_target(r)?;
        let version = r.u64("version")?;
        let commit_ms = r.u64("commit_ms")?;
        let flags = wire::check_flags(
            r.u8("change flags")?,
            TOMBSTONE | HAS_EXPIRATION | HAS_VALUE | HAS_METADATA,
            "change",
        )?;
        let tombstone = flags & TOMBSTONE != 0;
        if flags & HAS_METADATA != 0 && flags & HAS_VALUE == 0 {
            return Err(ProtoError::InvalidCode {
                field: "change flags",
                code: flags,
            });
        }
        if tombstone && flags & HAS_VALUE != 0 {
            return Err(ProtoError::InvalidCode {
                field: "change flags",
                code: flags,
            });
        }
        let expiration = r.optional_u64(flags, HAS_EXPIRATION, "expiration")?;
        let value = match flags & HAS_VALUE {
            0 => None,
            _ => {
                let metadata = read_optional_metadata(r, flags & HAS_METADATA != 0)?;
                let value = r.bytes32(MAX_INLINE_VALUE, "inline value")?;
                Some(InlineValue { metadata, value })
            }
        };
        Ok(Self {
            namespace,
            key,
            version,
            tombstone,
            expiration,
            commit_ms,
            value,
        })
    }
}

/// One frame of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Where the feed stands: sent first, and again when a subscriber fell
    /// behind the backlog.
    Sync {
        /// The publisher's epoch.
        epoch: u64,
        /// The sequence number of the next event.
        next_seq: u64,
        /// Whether events the subscriber asked for were lost: it must not
        /// trust what it cached before this point.
        gap: bool,
    },
    /// A write or delete.
    Change {
        /// Its sequence number.
        seq: u64,
        /// What changed.
        change: Change,
    },
    /// The publisher lost events from its own upstream: subscribers must not
    /// trust what they cached before this point.
    Resync {
        /// Its sequence number.
        seq: u64,
    },
}

impl FeedEvent {
    const SYNC: u8 = 1;
    const CHANGE: u8 = 2;
    const RESYNC: u8 = 3;
    const GAP: u8 = 0b1;

    /// The sequence number of a change or resync.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Sync { .. } => None,
            Self::Change { seq, .. } | Self::Resync { seq } => Some(*seq),
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        match self {
            Self::Sync {
                epoch,
                next_seq,
                gap,
            } => {
                buf.put_u8(Self::SYNC);
                buf.put_u64(*epoch);
                buf.put_u64(*next_seq);
                buf.put_u8(if *gap { Self::GAP } else { 0 });
            }
            Self::Change { seq, change } => {
                buf.put_u8(Self::CHANGE);
                buf.put_u64(*seq);
                change.encode(buf);
            }
            Self::Resync { seq } => {
                buf.put_u8(Self::RESYNC);
                buf.put_u64(*seq);
            }
        }
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        match r.u8("feed event kind")? {
            Self::SYNC => {
                let epoch = r.u64("epoch")?;
                let next_seq = r.u64("next_seq")?;
                let flags = wire::check_flags(r.u8("sync flags")?, Self::GAP, "sync")?;
                Ok(Self::Sync {
                    epoch,
                    next_seq,
                    gap: flags & Self::GAP != 0,
                })
            }
            Self::CHANGE => {
                let seq = r.u64("seq")?;
                Ok(Self::Change {
                    seq,
                    change: Change::decode(r)?,
                })
            }
            Self::RESYNC => Ok(Self::Resync { seq: r.u64("seq")? }),
            code => Err(ProtoError::InvalidCode {
                field: "feed event kind",
                code,
            }),
        }
    }
}
