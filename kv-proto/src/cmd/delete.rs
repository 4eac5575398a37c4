//! DELETE: remove one key.

use bytes::BufMut;

use crate::error::ProtoError;
use crate::types::{Key, Namespace};
use crate::wire::Reader;

/// Remove `key` from `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// The namespace.
    pub namespace: Namespace,
    /// The key.
    pub key: Key,
}

impl DeleteRequest {
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        super::put_target(buf, &self.namespace, &self.key);
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = super::read_target(r)?;
        Ok(Self { namespace, key })
    }
}
