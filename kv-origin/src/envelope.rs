//! The object format: one self-describing envelope per key.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "TKVE"
//!      4     1  format version (2; format 1 is read too)
//!      5     1  flags: bit 0 expiration present, bit 1 metadata present,
//!                      bit 2 tombstone (a delete; the value is empty)
//!      6     2  key length K (u16, big-endian, like every integer here)
//!      8     2  metadata length M
//!     10     2  write-log entries W (0 in format 1, where it was reserved)
//!     12     8  version
//!     20     8  expiration, unix seconds (0 when absent)
//!     28     8  value length V
//!     36     4  CRC-32C of the value
//!     40     4  CRC-32C of the head: bytes 0..40, then the key, metadata and write log
//!     44     K  key, UTF-8
//!   44+K     M  metadata, JSON
//! 44+K+M  32×W  write log: per entry, write id (u128), version, unix millis
//!      …     V  value
//! ```
//!
//! The head (everything before the value) is at most [`MAX_HEAD_LEN`] bytes and
//! has its own checksum, so a LIST reads and verifies just the head of each
//! object; a GET verifies both checksums.
//!
//! The write log holds the ids of the latest writes of the key (at most
//! [`MAX_WRITE_LOG`]), with the version each got: a retried write finds its
//! id there and gets the same version back instead of being applied again.
//! A delete is stored as a tombstone, so the key's version survives it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kv_proto::limits::{MAX_KEY_LEN, MAX_METADATA_LEN};
use kv_proto::{Entry, Key, Metadata, WriteId};

const MAGIC: &[u8; 4] = b"TKVE";
/// The envelope format this build writes.
pub const FORMAT_VERSION: u8 = 2;
/// The first format, without tombstones or a write log; still read.
const FORMAT_V1: u8 = 1;
const FIXED_LEN: usize = 44;
/// Most write-log entries an envelope keeps.
pub const MAX_WRITE_LOG: usize = 64;
const LOG_ENTRY_LEN: usize = 32;
/// Longest possible head.
pub const MAX_HEAD_LEN: usize =
    FIXED_LEN + MAX_KEY_LEN + MAX_METADATA_LEN + MAX_WRITE_LOG * LOG_ENTRY_LEN;
const HAS_EXPIRATION: u8 = 0b001;
const HAS_METADATA: u8 = 0b010;
const TOMBSTONE: u8 = 0b100;

/// Why stored bytes are not a valid envelope. Any of these means the object
/// was damaged or written by something else: it is never served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Too short to hold what its head declares.
    #[error("envelope truncated")]
    Truncated,
    /// Not a tierkv envelope.
    #[error("bad magic")]
    BadMagic,
    /// Written by a newer format.
    #[error("unsupported envelope format {0}")]
    UnsupportedFormat(u8),
    /// The head's checksum does not match.
    #[error("head checksum mismatch")]
    HeadChecksum,
    /// The value's checksum does not match.
    #[error("value checksum mismatch")]
    ValueChecksum,
    /// A field is out of range (flags, lengths, bad UTF-8 or JSON).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// One write remembered in an object's write log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedWrite {
    /// The write's id.
    pub id: WriteId,
    /// The version it got.
    pub version: u64,
    /// When it was applied, in unix milliseconds.
    pub at_millis: u64,
}

/// What a key's object holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The key, stored so that a misplaced object is caught.
    pub key: Key,
    /// The value and its attributes. A tombstone has an empty value, and
    /// its version is the delete's.
    pub entry: Entry,
    /// Whether this records a delete.
    pub tombstone: bool,
    /// The latest writes, oldest first.
    pub writes: Vec<LoggedWrite>,
}

impl Object {
    /// The value, unless the object is a tombstone.
    pub fn live_entry(self) -> Option<Entry> {
        (!self.tombstone).then_some(self.entry)
    }
}

/// A decoded head: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The key stored in the envelope.
    pub key: Key,
    /// The version.
    pub version: u64,
    /// Expiration, unix seconds.
    pub expiration: Option<u64>,
    /// Metadata.
    pub metadata: Option<Metadata>,
    /// Whether the object records a delete.
    pub tombstone: bool,
    /// The write log, oldest first.
    pub writes: Vec<LoggedWrite>,
    value_len: usize,
    value_crc: u32,
    head_len: usize,
}

/// Encodes an envelope as its head and the value, which is not copied.
/// A write log longer than [`MAX_WRITE_LOG`] keeps its newest entries.
pub fn encode(object: &Object) -> (Bytes, Bytes) {
    let entry = &object.entry;
    let metadata = entry.metadata.as_ref().map_or(&[][..], |m| m.as_bytes());
    let writes = &object.writes[object.writes.len().saturating_sub(MAX_WRITE_LOG)..];
    let mut flags = 0;
    if entry.expiration.is_some() {
        flags |= HAS_EXPIRATION;
    }
    if entry.metadata.is_some() {
        flags |= HAS_METADATA;
    }
    if object.tombstone {
        flags |= TOMBSTONE;
    }
    let key_bytes = object.key.as_str().as_bytes();
    let head_len = FIXED_LEN + key_bytes.len() + metadata.len() + writes.len() * LOG_ENTRY_LEN;
    let mut head = BytesMut::with_capacity(head_len);
    head.put_slice(MAGIC);
    head.put_u8(FORMAT_VERSION);
    head.put_u8(flags);
    head.put_u16(u16::try_from(key_bytes.len()).unwrap_or(u16::MAX));
    head.put_u16(u16::try_from(metadata.len()).unwrap_or(u16::MAX));
    head.put_u16(u16::try_from(writes.len()).unwrap_or(u16::MAX));
    head.put_u64(entry.version);
    head.put_u64(entry.expiration.unwrap_or(0));
    head.put_u64(entry.value.len() as u64);
    head.put_u32(crc32c::crc32c(&entry.value));
    head.put_u32(0); // the head checksum, filled in below
    head.put_slice(key_bytes);
    head.put_slice(metadata);
    for write in writes {
        head.put_u128(write.id.0);
        head.put_u64(write.version);
        head.put_u64(write.at_millis);
    }
    let head_crc = crc32c::crc32c_append(crc32c::crc32c(&head[..40]), &head[FIXED_LEN..]);
    head[40..44].copy_from_slice(&head_crc.to_be_bytes());
    (head.freeze(), entry.value.clone())
}

/// Decodes and verifies the head at the start of `bytes` (which may hold
/// only the head, as a ranged LIST read does).
pub fn decode_head(bytes: &[u8]) -> Result<Head, EnvelopeError> {
    let mut fixed = bytes.get(..FIXED_LEN).ok_or(EnvelopeError::Truncated)?;
    if &fixed[..4] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    fixed.advance(4);
    let format = fixed.get_u8();
    if format != FORMAT_VERSION && format != FORMAT_V1 {
        return Err(EnvelopeError::UnsupportedFormat(format));
    }
    let flags = fixed.get_u8();
    let known_flags = match format {
        FORMAT_V1 => HAS_EXPIRATION | HAS_METADATA,
        _ => HAS_EXPIRATION | HAS_METADATA | TOMBSTONE,
    };
    if flags & !known_flags != 0 {
        return Err(EnvelopeError::Invalid("flags"));
    }
    let key_len = usize::from(fixed.get_u16());
    let metadata_len = usize::from(fixed.get_u16());
    let log_len = usize::from(fixed.get_u16());
    if key_len == 0
        || key_len > MAX_KEY_LEN
        || metadata_len > MAX_METADATA_LEN
        || log_len > MAX_WRITE_LOG
        || (format == FORMAT_V1 && log_len != 0)
    {
        return Err(EnvelopeError::Invalid("lengths"));
    }
    let version = fixed.get_u64();
    let expiration = fixed.get_u64();
    let value_len =
        usize::try_from(fixed.get_u64()).map_err(|_| EnvelopeError::Invalid("value length"))?;
    let value_crc = fixed.get_u32();
    let head_crc = fixed.get_u32();
    let head_len = FIXED_LEN + key_len + metadata_len + log_len * LOG_ENTRY_LEN;
    let rest = bytes
        .get(FIXED_LEN..head_len)
        .ok_or(EnvelopeError::Truncated)?;
    if crc32c::crc32c_append(crc32c::crc32c(&bytes[..40]), rest) != head_crc {
        return Err(EnvelopeError::HeadChecksum);
    }
    let tombstone = flags & TOMBSTONE != 0;
    if tombstone && value_len != 0 {
        return Err(EnvelopeError::Invalid("tombstone with a value"));
    }
    let (key_bytes, rest) = rest.split_at(key_len);
    let (metadata_bytes, mut log) = rest.split_at(metadata_len);
    let key = std::str::from_utf8(key_bytes)
        .ok()
        .and_then(|k| Key::new(k).ok())
        .ok_or(EnvelopeError::Invalid("key"))?;
    let metadata = match flags & HAS_METADATA {
        0 => None,
        _ => Some(
            Metadata::new(Bytes::copy_from_slice(metadata_bytes))
                .map_err(|_| EnvelopeError::Invalid("metadata"))?,
        ),
    };
    let writes = (0..log_len)
        .map(|_| LoggedWrite {
            id: WriteId(log.get_u128()),
            version: log.get_u64(),
            at_millis: log.get_u64(),
        })
        .collect();
    Ok(Head {
        key,
        version,
        expiration: (flags & HAS_EXPIRATION != 0).then_some(expiration),
        metadata,
        tombstone,
        writes,
        value_len,
        value_crc,
        head_len,
    })
}

/// Decodes and verifies a whole envelope; the value is sliced, not copied.
pub fn decode(bytes: Bytes) -> Result<Object, EnvelopeError> {
    let head = decode_head(&bytes)?;
    let end = head
        .head_len
        .checked_add(head.value_len)
        .ok_or(EnvelopeError::Invalid("value length"))?;
    if bytes.len() != end {
        return Err(if bytes.len() < end {
            EnvelopeError::Truncated
        } else {
            EnvelopeError::Invalid("trailing bytes")
        });
    }
    let value = bytes.slice(head.head_len..end);
    if crc32c::crc32c(&value) != head.value_crc {
        return Err(EnvelopeError::ValueChecksum);
    }
    Ok(Object {
        key: head.key,
        entry: Entry {
            version: head.version,
            expiration: head.expiration,
            metadata: head.metadata,
            value,
        },
        tombstone: head.tombstone,
        writes: head.writes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Object {
        Object {
            key: Key::new("dir/ключ").unwrap(),
            entry: Entry {
                version: 7,
                expiration: Some(1_900_000_000),
                metadata: Some(Metadata::new(&b"{\"a\":1}"[..]).unwrap()),
                value: Bytes::from_static(b"hello world"),
            },
            tombstone: false,
            writes: vec![
                LoggedWrite {
                    id: WriteId(1),
                    version: 5,
                    at_millis: 1_000,
                },
                LoggedWrite {
                    id: WriteId(u128::MAX),
                    version: 7,
                    at_millis: 2_000,
                },
            ],
        }
    }

    fn joined(object: &Object) -> Bytes {
        let (head, value) = encode(object);
        [head, value].concat().into()
    }

    #[test]
    fn round_trips_with_and_without_optional_fields() {
        let object = sample();
        assert_eq!(decode(joined(&object)).unwrap(), object);
        let bare = Object {
            entry: Entry {
                expiration: None,
                metadata: None,
                value: Bytes::new(),
                ..object.entry.clone()
            },
            writes: Vec::new(),
            ..object.clone()
        };
        assert_eq!(decode(joined(&bare)).unwrap(), bare);
        let tombstone = Object {
            tombstone: true,
            ..bare
        };
        let decoded = decode(joined(&tombstone)).unwrap();
        assert!(decoded.tombstone);
        assert_eq!(decoded.live_entry(), None);
    }

    #[test]
    fn the_write_log_keeps_its_newest_entries() {
        let mut object = sample();
        object.writes = (0..MAX_WRITE_LOG as u128 + 10)
            .map(|i| LoggedWrite {
                id: WriteId(i),
                version: i as u64,
                at_millis: 0,
            })
            .collect();
        let decoded = decode(joined(&object)).unwrap();
        assert_eq!(decoded.writes.len(), MAX_WRITE_LOG);
        assert_eq!(decoded.writes[0].id, WriteId(10));
        assert!(encode(&object).0.len() <= MAX_HEAD_LEN);
    }

    #[test]
    fn format_1_objects_still_decode() {
        // A format-1 envelope, as the previous release wrote it: no write
        // log (the field was reserved, 0) and no tombstone flag.
        let mut object = sample();
        object.writes.clear();
        let mut bytes = joined(&object).to_vec();
        bytes[4] = FORMAT_V1;
        let head_len = FIXED_LEN + object.key.as_str().len() + 7;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..40]), &bytes[FIXED_LEN..head_len]);
        bytes[40..44].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode(bytes.into()).unwrap();
        assert_eq!(decoded, object);
    }

    #[test]
    fn a_tombstone_with_a_value_is_refused() {
        let mut object = sample();
        object.tombstone = true;
        assert_eq!(
            decode(joined(&object)),
            Err(EnvelopeError::Invalid("tombstone with a value"))
        );
    }

    #[test]
    fn head_decodes_from_a_prefix() {
        let object = sample();
        let bytes = joined(&object);
        let head = decode_head(&bytes[..MAX_HEAD_LEN.min(bytes.len() - 3)]).unwrap();
        assert_eq!(
            (head.key, head.version, head.expiration),
            (object.key, 7, object.entry.expiration)
        );
        assert_eq!(head.metadata, object.entry.metadata);
        assert_eq!(head.writes, object.writes);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = joined(&sample());
        for i in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[i] ^= 0x40;
            assert!(
                decode(damaged.into()).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn truncation_and_foreign_bytes_are_refused() {
        let bytes = joined(&sample());
        for len in 0..bytes.len() {
            assert!(
                decode(bytes.slice(..len)).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            decode(longer.into()),
            Err(EnvelopeError::Invalid("trailing bytes"))
        );
        assert_eq!(
            decode(Bytes::from_static(&[0; 64])),
            Err(EnvelopeError::BadMagic)
        );
        let mut future = bytes.to_vec();
        future[4] = 3;
        assert_eq!(
            decode(future.into()),
            Err(EnvelopeError::UnsupportedFormat(3))
        );
    }
}
