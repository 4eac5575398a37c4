//! One module per request, each with its fields and body codec.

mod delete;
mod get;
mod list;
pub(crate) mod put;

pub use delete::DeleteRequest;
pub use get::GetRequest;
pub use list::ListRequest;
pub use put::PutRequest;

use bytes::BufMut;

use crate::error::ProtoError;
use crate::limits::{MAX_KEY_LEN, MAX_NAMESPACE_LEN};
use crate::types::{Key, Namespace};
use crate::wire::{self, Reader};

/// Every request names a namespace and, but for LIST, a key.
pub(crate) fn put_target(buf: &mut impl BufMut, namespace: &Namespace, key: &Key) {
    wire::put_bytes8(buf, namespace.as_str().as_bytes());
    wire::put_bytes16(buf, key.as_str().as_bytes());
}

pub(crate) fn read_namespace(r: &mut Reader) -> Result<Namespace, ProtoError> {
    let raw = r.bytes8(MAX_NAMESPACE_LEN, "namespace")?;
    Namespace::new(wire::utf8(raw, "namespace").map_err(|_| ProtoError::InvalidNamespace)?)
}

pub(crate) fn read_key(r: &mut Reader, field: &'static str) -> Result<Key, ProtoError> {
    Key::new(r.string16(MAX_KEY_LEN, field)?)
}

pub(crate) fn read_target(r: &mut Reader) -> Result<(Namespace, Key), ProtoError> {
    Ok((read_namespace(r)?, read_key(r, "key")?))
}
