//! The object format: one self-describing envelope per key.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "TKVE"
//!      4     1  format version (1)
//!      5     1  flags: bit 0 expiration present, bit 1 metadata present
//!      6     2  key length K (u16, big-endian, like every integer here)
//!      8     2  metadata length M
//!     10     2  reserved, 0
//!     12     8  version
//!     20     8  expiration, unix seconds (0 when absent)
//!     28     8  value length V
//!     36     4  CRC-32C of the value
//!     40     4  CRC-32C of the head: bytes 0..40, then the key and metadata
//!     44     K  key, UTF-8
//!   44+K     M  metadata, JSON
//! 44+K+M     V  value
//! ```
//!
//! The head (everything before the value) is at most [`MAX_HEAD_LEN`] bytes and
//! has its own checksum, so a LIST reads and verifies just the head of each
//! object; a GET verifies both checksums.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kv_proto::limits::{MAX_KEY_LEN, MAX_METADATA_LEN};
use kv_proto::{Entry, Key, Metadata};

const MAGIC: &[u8; 4] = b"TKVE";
/// The envelope format this build writes.
pub const FORMAT_VERSION: u8 = 1;
const FIXED_LEN: usize = 44;
/// Longest possible head.
pub const MAX_HEAD_LEN: usize = FIXED_LEN + MAX_KEY_LEN + MAX_METADATA_LEN;
const HAS_EXPIRATION: u8 = 0b01;
const HAS_METADATA: u8 = 0b10;

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
    value_len: usize,
    value_crc: u32,
    head_len: usize,
}

/// Encodes an envelope as its head and the value, which is not copied.
pub fn encode(key: &Key, entry: &Entry) -> (Bytes, Bytes) {
    let metadata = entry.metadata.as_ref().map_or(&[][..], |m| m.as_bytes());
    let mut flags = 0;
    if entry.expiration.is_some() {
        flags |= HAS_EXPIRATION;
    }
    if entry.metadata.is_some() {
        flags |= HAS_METADATA;
    }
    let key_bytes = key.as_str().as_bytes();
    let mut head = BytesMut::with_capacity(FIXED_LEN + key_bytes.len() + metadata.len());
    head.put_slice(MAGIC);
    head.put_u8(FORMAT_VERSION);
    head.put_u8(flags);
    head.put_u16(u16::try_from(key_bytes.len()).unwrap_or(u16::MAX));
    head.put_u16(u16::try_from(metadata.len()).unwrap_or(u16::MAX));
    head.put_u16(0);
    head.put_u64(entry.version);
    head.put_u64(entry.expiration.unwrap_or(0));
    head.put_u64(entry.value.len() as u64);
    head.put_u32(crc32c::crc32c(&entry.value));
    let head_crc = crc32c::crc32c_append(crc32c::crc32c(&head[..40]), key_bytes);
    let head_crc = crc32c::crc32c_append(head_crc, metadata);
    head.put_u32(head_crc);
    head.put_slice(key_bytes);
    head.put_slice(metadata);
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
    if format != FORMAT_VERSION {
        return Err(EnvelopeError::UnsupportedFormat(format));
    }
    let flags = fixed.get_u8();
    if flags & !(HAS_EXPIRATION | HAS_METADATA) != 0 {
        return Err(EnvelopeError::Invalid("flags"));
    }
    let key_len = usize::from(fixed.get_u16());
    let metadata_len = usize::from(fixed.get_u16());
    if key_len == 0 || key_len > MAX_KEY_LEN || metadata_len > MAX_METADATA_LEN {
        return Err(EnvelopeError::Invalid("lengths"));
    }
    let _reserved = fixed.get_u16();
    let version = fixed.get_u64();
    let expiration = fixed.get_u64();
    let value_len =
        usize::try_from(fixed.get_u64()).map_err(|_| EnvelopeError::Invalid("value length"))?;
    let value_crc = fixed.get_u32();
    let head_crc = fixed.get_u32();
    let head_len = FIXED_LEN + key_len + metadata_len;
    let rest = bytes
        .get(FIXED_LEN..head_len)
        .ok_or(EnvelopeError::Truncated)?;
    if crc32c::crc32c_append(crc32c::crc32c(&bytes[..40]), rest) != head_crc {
        return Err(EnvelopeError::HeadChecksum);
    }
    let key = std::str::from_utf8(&rest[..key_len])
        .ok()
        .and_then(|k| Key::new(k).ok())
        .ok_or(EnvelopeError::Invalid("key"))?;
    let metadata = match flags & HAS_METADATA {
        0 => None,
        _ => Some(
            Metadata::new(Bytes::copy_from_slice(&rest[key_len..]))
                .map_err(|_| EnvelopeError::Invalid("metadata"))?,
        ),
    };
    Ok(Head {
        key,
        version,
        expiration: (flags & HAS_EXPIRATION != 0).then_some(expiration),
        metadata,
        value_len,
        value_crc,
        head_len,
    })
}

/// Decodes and verifies a whole envelope; the value is sliced, not copied.
pub fn decode(bytes: Bytes) -> Result<(Key, Entry), EnvelopeError> {
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
    let entry = Entry {
        version: head.version,
        expiration: head.expiration,
        metadata: head.metadata,
        value,
    };
    Ok((head.key, entry))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> (Key, Entry) {
        let key = Key::new("dir/ключ").unwrap();
        let entry = Entry {
            version: 7,
            expiration: Some(1_900_000_000),
            metadata: Some(Metadata::new(&b"{\"a\":1}"[..]).unwrap()),
            value: Bytes::from_static(b"hello world"),
        };
        (key, entry)
    }

    fn joined(key: &Key, entry: &Entry) -> Bytes {
        let (head, value) = encode(key, entry);
        [head, value].concat().into()
    }

    #[test]
    fn round_trips_with_and_without_optional_fields() {
        let (key, entry) = sample();
        assert_eq!(
            decode(joined(&key, &entry)).unwrap(),
            (key.clone(), entry.clone())
        );
        let bare = Entry {
            expiration: None,
            metadata: None,
            value: Bytes::new(),
            ..entry
        };
        assert_eq!(decode(joined(&key, &bare)).unwrap(), (key, bare));
    }

    #[test]
    fn head_decodes_from_a_prefix() {
        let (key, entry) = sample();
        let bytes = joined(&key, &entry);
        let head = decode_head(&bytes[..MAX_HEAD_LEN.min(bytes.len() - 3)]).unwrap();
        assert_eq!(
            (head.key, head.version, head.expiration),
            (key, 7, entry.expiration)
        );
        assert_eq!(head.metadata, entry.metadata);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (key, entry) = sample();
        let bytes = joined(&key, &entry);
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
        let (key, entry) = sample();
        let bytes = joined(&key, &entry);
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
        future[4] = 2;
        assert_eq!(
            decode(future.into()),
            Err(EnvelopeError::UnsupportedFormat(2))
        );
    }
}
