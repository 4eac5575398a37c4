//! LIST: one page of the keys under a prefix, in lexicographic order.

use bytes::BufMut;

use crate::error::ProtoError;
use crate::limits::{MAX_CURSOR_LEN, MAX_KEY_LEN, MAX_LIST_LIMIT};
use crate::types::Namespace;
use crate::wire::{self, Reader};

/// List the keys of `namespace` that start with `prefix`, after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The namespace.
    pub namespace: Namespace,
    /// Only keys starting with this (at most 512 bytes); empty lists every key.
    pub prefix: String,
    /// The opaque cursor of the previous page; empty for the first page.
    pub cursor: String,
    /// Most keys to return, 1–1000.
    pub limit: u16,
}

impl ListRequest {
    /// The first page of up to 1000 keys under `prefix`.
    pub fn new(namespace: Namespace, prefix: impl Into<String>) -> Self {
        Self {
            namespace,
            prefix: prefix.into(),
            cursor: String::new(),
            limit: MAX_LIST_LIMIT,
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        wire::put_bytes8(buf, self.namespace.as_str().as_bytes());
        wire::put_bytes16(buf, self.prefix.as_bytes());
        wire::put_bytes16(buf, self.cursor.as_bytes());
        buf.put_u16(self.limit);
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let namespace = super::read_namespace(r)?;
        let prefix = r.string16(MAX_KEY_LEN, "prefix")?;
        let cursor = r.string16(MAX_CURSOR_LEN, "cursor")?;
        let limit = r.u16("limit")?;
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(ProtoError::InvalidListLimit(limit));
        }
        Ok(Self {
            namespace,
            prefix,
            cursor,
            limit,
        })
    }
}
