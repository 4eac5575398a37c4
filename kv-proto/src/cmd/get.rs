//! GET: read one key.

use bytes::BufMut;

use crate::error::ProtoError;
use crate::types::{Key, Namespace};
use crate::wire::{self, Reader};

const HAS_MIN_VERSION: u8 = 0b001;
const HAS_CACHE_TTL: u8 = 0b010;
const HAS_UNLESS_VERSION: u8 = 0b100;

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
    /// How old a copy, in seconds, the reader accepts; the tier's default when absent.
    pub cache_ttl: Option<u32>,
    /// The version the reader holds (a copy it could not serve on trust):
    /// if it is still current, the answer is [`crate::Body::NotModified`]
    /// instead of the value.
    pub unless_version: Option<u64>,
}

impl GetRequest {
    /// A plain read.
    pub fn new(namespace: Namespace, key: Key) -> Self {
        Self {
            namespace,
            key,
            min_version: None,
            cache_ttl: None,
            unless_version: None,
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
        if self.unless_version.is_some() {
            flags |= HAS_UNLESS_VERSION;
        }
        buf.put_u8(flags);
        wire::put_optional_u64(buf, self.min_version);
        if let Some(ttl) = self.cache_ttl {
            buf.put_u32(ttl);
        }
        wire::put_optional_u64(buf, self.unless_version);
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = super::read_target(r)?;
        let flags = wire::check_flags(
            r.u8("get flags")?,
            HAS_MIN_VERSION | HAS_CACHE_TTL | HAS_UNLESS_VERSION,
            "get",
        )?;
        let min_version = r.optional_u64(flags, HAS_MIN_VERSION, "min_version")?;
        let cache_ttl = match flags & HAS_CACHE_TTL {
            0 => None,
            _ => Some(r.u32("cache_ttl")?),
        };
        let unless_version = r.optional_u64(flags, HAS_UNLESS_VERSION, "unless_version")?;
        Ok(Self {
            namespace,
            key,
            min_version,
            cache_ttl,
            unless_version,
        })
    }
}
