//! PUT: write one key.

use bytes::{BufMut, Bytes};

use crate::error::ProtoError;
use crate::limits::{MAX_METADATA_LEN, MAX_VALUE_LEN};
use crate::request::WriteId;
use crate::types::{Key, Metadata, Namespace};
use crate::wire::{self, Reader};

const HAS_EXPIRATION: u8 = 0b01;
const HAS_METADATA: u8 = 0b10;

/// Write `value` under `key` in `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRequest {
    /// The namespace.
    pub namespace: Namespace,
    /// The key.
    pub key: Key,
    /// The value, at most 25 MiB.
    pub value: Bytes,
    /// When the value expires, in unix seconds.
    pub expiration: Option<u64>,
    /// User metadata.
    pub metadata: Option<Metadata>,
    /// The same for every retry of this write; applied at most once.
    pub write_id: WriteId,
}

impl PutRequest {
    /// A write with no expiration or metadata and a fresh write id; refuses a
    /// value over the limit.
    pub fn new(namespace: Namespace, key: Key, value: Bytes) -> Result<Self, ProtoError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(ProtoError::ValueTooLarge { len: value.len() });
        }
        Ok(Self {
            namespace,
            key,
            value,
            expiration: None,
            metadata: None,
            write_id: WriteId::random(),
        })
    }

    /// Writes every field but the value's bytes, which it returns: the value is
    /// the body's last field, so a sender can pass it on without copying it.
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) -> Bytes {
        super::put_target(buf, &self.namespace, &self.key);
        buf.put_u128(self.write_id.0);
        let mut flags = 0;
        if self.expiration.is_some() {
            flags |= HAS_EXPIRATION;
        }
        if self.metadata.is_some() {
            flags |= HAS_METADATA;
        }
        buf.put_u8(flags);
        wire::put_optional_u64(buf, self.expiration);
        if let Some(metadata) = &self.metadata {
            wire::put_bytes16(buf, metadata.as_bytes());
        }
        buf.put_u32(u32::try_from(self.value.len()).unwrap_or(u32::MAX));
        self.value.clone()
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let (namespace, key) = super::read_target(r)?;
        let write_id = WriteId(r.u128("write id")?);
        let flags = wire::check_flags(r.u8("put flags")?, HAS_EXPIRATION | HAS_METADATA, "put")?;
        let expiration = r.optional_u64(flags, HAS_EXPIRATION, "expiration")?;
        let metadata = read_optional_metadata(r, flags & HAS_METADATA != 0)?;
        let value = r.bytes32(MAX_VALUE_LEN, "value")?;
        Ok(Self {
            namespace,
            key,
            value,
            expiration,
            metadata,
            write_id,
        })
    }
}

/// Reads metadata present when `present`, validating it as JSON.
pub(crate) fn read_optional_metadata(
    r: &mut Reader,
    present: bool,
) -> Result<Option<Metadata>, ProtoError> {
    if !present {
        return Ok(None);
    }
    Metadata::new(r.bytes16(MAX_METADATA_LEN, "metadata")?).map(Some)
}
