//! DELETE: remove one key.

use bytes::BufMut;

use crate::error::ProtoError;
use crate::request::WriteId;
use crate::types::{Key, Namespace};
use crate::wire::Reader;

/// Remove `key` from `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// The namespace.
    pub namespace: Namespace,
    /// The key.
    pub key: Key,
    /// The same for every retry of this delete; applied at most once.
    pub write_id: WriteId,
}

impl DeleteRequest {
    /// A delete with a fresh write id.
    pub fn new(namespace: Namespace, key: Key) -> Self {
        Self {
            namespace,
            key,
            write_id: WriteId::random(),
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        super::put_target(buf, &self.namespace, &self.key);
        buf.put_u128(self.write_id.0);
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = super::read_target(r)?;
        let write_id = WriteId(r.u128("write id")?);
        Ok(Self {
            namespace,
            key,
            write_id,
        })
    }
}
