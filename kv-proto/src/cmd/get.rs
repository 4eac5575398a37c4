//! GET: read one key.

use bytes::BufMut;

use crate::error::ProtoError;
use crate::types::{Key, Namespace};
use crate::wire::{self, Reader};

const HAS_MIN_VERSION: u8 = 0b01;
const HAS_CACHE_TTL: u8 = 0b10;

/// Read `key` in `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    /// The namespace.
    pub namespace: Namespace,
    /// The key.
    pub key: Key,
    /// Refuse cached copies older than this version: a reader that has seen
    /// version N (its own write, say) never reads anything older from a cache.
    pub min_version: Option<u64>,
    /// How long, in seconds, a cache may keep the answer; the tier's default when absent.
    pub cache_ttl: Option<u32>,
}

impl GetRequest {
    /// A plain read.
    pub fn new(namespace: Namespace, key: Key) -> Self {
        Self {
            namespace,
            key,
            min_version: None,
            cache_ttl: None,
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        super::put_target(buf, &self.namespace, &self.key);
        let mut flags = 0;
        if self.min_version.is_some() {
            flags |= HAS_MIN_VERSION;
        }
        if self.cache_ttl.is_some() {
            flags |= HAS_CACHE_TTL;
        }
        buf.put_u8(flags);
        wire::put_optional_u64(buf, self.min_version);
        if let Some(ttl) = self.cache_ttl {
            buf.put_u32(ttl);
        }
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = super::read_target(r)?;
        let flags = wire::check_flags(r.u8("get flags")?, HAS_MIN_VERSION | HAS_CACHE_TTL, "get")?;
        let min_version = r.optional_u64(flags, HAS_MIN_VERSION, "min_version")?;
        let cache_ttl = match flags & HAS_CACHE_TTL {
            0 => None,
            _ => Some(r.u32("cache_ttl")?),
        };
        Ok(Self {
            namespace,
            key,
            min_version,
            cache_ttl,
        })
    }
}
