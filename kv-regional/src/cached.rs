//! What the regional cache stores for a key, and its disk encoding.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use foyer::Code;
use kv_proto::{Entry, Metadata};
use kv_runtime::freshness::CopyAge;

/// A cached answer from the origin: a value, or the knowledge that there is
/// none (negative caching). Whether it is fresh for a read is decided by the
/// node's freshness rules ([`kv_runtime::freshness`]) from when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// Unix milliseconds after which no read can use it (past every TTL and
    /// the stale grace). Wall-clock, so it stays meaningful after a restart
    /// recovers the disk.
    pub keep_until_ms: u64,
    /// The value's version, or for a cached miss the version of the delete
    /// that caused it (0 when unknown).
    pub version: u64,
    /// The value, or `None` for a cached miss.
    pub entry: Option<Entry>,
    /// Unix milliseconds when the fetch that brought this answer from the
    /// origin started (or when the change feed delivered it): its age counts
    /// from then, and a copy fetched before the node's feeds last had a gap
    /// is checked with the origin before use.
    pub fetched_at_ms: u64,
}

impl Cached {
    /// A value or miss (`entry` is `None`: at `version`, that of its
    /// delete, 0 when unknown) fetched at `fetched_at_ms`, kept for
    /// `keep_for` and never past the value's expiration.
    pub fn new(version: u64, entry: Option<Entry>, fetched_at_ms: u64, keep_for: Duration) -> Self {
        let kept = fetched_at_ms.saturating_add(millis(keep_for));
        let expires = entry
            .as_ref()
            .and_then(|e| e.expiration)
            .map(|at| at.saturating_mul(1000));
        Self {
            keep_until_ms: expires.map_or(kept, |at| kept.min(at)),
            version,
            entry,
            fetched_at_ms,
        }
    }

    /// Its timing, for a freshness verdict.
    pub fn age(&self) -> CopyAge {
        CopyAge {
            read_at_ms: self.fetched_at_ms,
            expiration: self.entry.as_ref().and_then(|e| e.expiration),
            is_miss: self.entry.is_none(),
        }
    }

    /// Bytes this answer occupies in memory, roughly.
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 96;
        OVERHEAD
            + self.entry.as_ref().map_or(0, |e| {
                e.value.len() + e.metadata.as_ref().map_or(0, |m| m.as_bytes().len())
            })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Format 2 added the fetch time; a format-1 entry reads as fetched at 0,
/// so it is checked with the origin before use.
const FORMAT: u8 = 2;
const FORMAT_WITHOUT_FETCH_TIME: u8 = 1;
const PRESENT: u8 = 0b001;
const HAS_EXPIRATION: u8 = 0b010;
const HAS_METADATA: u8 = 0b100;

fn io_err(message: &'static str) -> foyer::Error {
    foyer::Error::io_error(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        message,
    ))
}

fn read_u64(reader: &mut impl Read) -> foyer::Result<u64> {
    let mut buf = [0u8; 8];
    reader
        .read_exact(&mut buf)
        .map_err(foyer::Error::io_error)?;
    Ok(u64::from_be_bytes(buf))
}

fn read_u32(reader: &mut impl Read) -> foyer::Result<u32> {
    let mut buf = [0u8; 4];
    reader
        .read_exact(&mut buf)
        .map_err(foyer::Error::io_error)?;
    Ok(u32::from_be_bytes(buf))
}

fn read_bytes(reader: &mut impl Read, len: usize, max: usize) -> foyer::Result<Vec<u8>> {
    if len > max {
        return Err(io_err("cached field over its limit"));
    }
    let mut buf = vec![0u8; len];
    reader
        .read_exact(&mut buf)
        .map_err(foyer::Error::io_error)?;
    Ok(buf)
}

/// Disk encoding. foyer checksums every entry it writes, so a damaged entry
/// is dropped as a miss before it reaches this decoder; the decoder still
/// checks every length and field, so foreign bytes are refused, not trusted.
impl Code for Cached {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        let mut flags = 0;
        if let Some(entry) = &self.entry {
            flags |= PRESENT;
            if entry.expiration.is_some() {
                flags |= HAS_EXPIRATION;
            }
            if entry.metadata.is_some() {
                flags |= HAS_METADATA;
            }
        }
        let io = foyer::Error::io_error;
        writer.write_all(&[FORMAT, flags]).map_err(io)?;
        writer
            .write_all(&self.keep_until_ms.to_be_bytes())
            .map_err(io)?;
        writer.write_all(&self.version.to_be_bytes()).map_err(io)?;
        writer
            .write_all(&self.fetched_at_ms.to_be_bytes())
            .map_err(io)?;
        if let Some(entry) = &self.entry {
            if let Some(expiration) = entry.expiration {
                writer.write_all(&expiration.to_be_bytes()).map_err(io)?;
            }
            if let Some(metadata) = &entry.metadata {
                let json = metadata.as_bytes();
                writer
                    .write_all(&(json.len() as u32).to_be_bytes())
                    .map_err(io)?;
                writer.write_all(json).map_err(io)?;
            }
            writer
                .write_all(&(entry.value.len() as u32).to_be_bytes())
                .map_err(io)?;
            writer.write_all(&entry.value).map_err(io)?;
        }
        Ok(())
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let mut fixed = [0u8; 2];
        reader
            .read_exact(&mut fixed)
            .map_err(foyer::Error::io_error)?;
        let [format, flags] = fixed;
        let known_format = format == FORMAT || format == FORMAT_WITHOUT_FETCH_TIME;
        if !known_format || flags & !(PRESENT | HAS_EXPIRATION | HAS_METADATA) != 0 {
            return Err(io_err("unknown cached entry format"));
        }
        let keep_until_ms = read_u64(reader)?;
        let version = read_u64(reader)?;
        let fetched_at_ms = match format {
            FORMAT => read_u64(reader)?,
            _ => 0,
        };
        if flags & PRESENT == 0 {
            return Ok(Self {
                keep_until_ms,
                version,
                entry: None,
                fetched_at_ms,
            });
        }
        let expiration = match flags & HAS_EXPIRATION {
            0 => None,
            _ => Some(read_u64(reader)?),
        };
        let metadata = match flags & HAS_METADATA {
            0 => None,
            _ => {
                let len = read_u32(reader)? as usize;
                let json = read_bytes(reader, len, kv_proto::limits::MAX_METADATA_LEN)?;
                Some(Metadata::new(json).map_err(|_| io_err("cached metadata is not JSON"))?)
            }
        };
        let len = read_u32(reader)? as usize;
        let value = Bytes::from(read_bytes(reader, len, kv_proto::limits::MAX_VALUE_LEN)?);
        Ok(Self {
            keep_until_ms,
            version,
            entry: Some(Entry {
                version,
                expiration,
                metadata,
                value,
            }),
            fetched_at_ms,
        })
    }

    fn estimated_size(&self) -> usize {
        self.weight()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round_trip(cached: &Cached) -> Cached {
        let mut buf = Vec::new();
        cached.encode(&mut buf).unwrap();
        Cached::decode(&mut buf.as_slice()).unwrap()
    }

    #[test]
    fn values_and_misses_round_trip() {
        let entry = Entry {
            version: 9,
            expiration: Some(2_000_000_000),
            metadata: Some(Metadata::new(&b"[1,2]"[..]).unwrap()),
            value: Bytes::from_static(b"v"),
        };
        let hit = Cached {
            keep_until_ms: 5,
            version: 9,
            entry: Some(entry),
            fetched_at_ms: 4,
        };
        assert_eq!(round_trip(&hit), hit);
        let miss = Cached {
            keep_until_ms: 6,
            version: 3,
            entry: None,
            fetched_at_ms: 2,
        };
        assert_eq!(round_trip(&miss), miss);
    }

    #[test]
    fn foreign_and_truncated_bytes_are_refused() {
        let hit = Cached {
            keep_until_ms: 1,
            version: 2,
            entry: Some(Entry {
                version: 2,
                expiration: None,
                metadata: None,
                value: Bytes::from_static(b"abc"),
            }),
            fetched_at_ms: 1,
        };
        let mut buf = Vec::new();
        hit.encode(&mut buf).unwrap();
        for len in 0..buf.len() {
            assert!(
                Cached::decode(&mut &buf[..len]).is_err(),
                "prefix {len} accepted"
            );
        }
        let mut bad = buf.clone();
        bad[0] = 99;
        assert!(Cached::decode(&mut bad.as_slice()).is_err());
    }

    #[test]
    fn a_format_1_entry_reads_as_fetched_at_zero() {
        let mut old = vec![1, 0];
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&3u64.to_be_bytes());
        let miss = Cached::decode(&mut old.as_slice()).unwrap();
        assert_eq!(
            miss,
            Cached {
                keep_until_ms: 7,
                version: 3,
                entry: None,
                fetched_at_ms: 0,
            }
        );
    }
}
