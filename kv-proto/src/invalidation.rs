//! Invalidation events, pushed by a server on a unidirectional stream.

use bytes::BufMut;

use crate::error::ProtoError;
use crate::types::{Key, Namespace};
use crate::wire::Reader;

/// Tells a peer that its cached copies of `key` older than `version` are stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// The namespace.
    pub namespace: Namespace,
    /// The key that changed.
    pub key: Key,
    /// The version of the write or delete that changed it.
    pub version: u64,
}

impl Invalidation {
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        crate::cmd::put_target(buf, &self.namespace, &self.key);
        buf.put_u64(self.version);
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = crate::cmd::read_target(r)?;
        let version = r.u64("version")?;
        Ok(Self {
            namespace,
            key,
            version,
        })
    }
}
