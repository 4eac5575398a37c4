//! Responses: a status, the tier that answered, and a body.

use bytes::{BufMut, Bytes};

use crate::cmd::put::read_optional_metadata;
use crate::error::ProtoError;
use crate::limits::{MAX_CURSOR_LEN, MAX_LIST_LIMIT, MAX_MESSAGE_LEN, MAX_VALUE_LEN};
use crate::request::RequestId;
use crate::types::{Key, Metadata, Status, Tier};
use crate::wire::{self, Reader};

const HAS_EXPIRATION: u8 = 0b01;
const HAS_METADATA: u8 = 0b10;

/// A stored value with what the origin recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Assigned by the origin; strictly increases with each write of a key.
    pub version: u64,
    /// When the value expires, in unix seconds.
    pub expiration: Option<u64>,
    /// User metadata.
    pub metadata: Option<Metadata>,
    /// The value.
    pub value: Bytes,
}

/// One key in a LIST page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    /// The key.
    pub name: Key,
    /// When it expires, in unix seconds.
    pub expiration: Option<u64>,
    /// Its metadata.
    pub metadata: Option<Metadata>,
}

/// One page of a LIST.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Keys in lexicographic order.
    pub keys: Vec<ListedKey>,
    /// Where the next page starts; `None` when the listing is complete.
    pub cursor: Option<String>,
}

/// What a response carries besides its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Nothing: a GET that found no key.
    Empty,
    /// A GET's value.
    Entry(Entry),
    /// A PUT's or DELETE's acknowledgement, with the version the origin assigned.
    Written {
        /// The version of the write.
        version: u64,
    },
    /// A LIST page.
    Page(ListPage),
    /// Why a request failed.
    Error {
        /// A human-readable message.
        message: String,
    },
}

impl Body {
    const EMPTY: u8 = 0;
    const ENTRY: u8 = 1;
    const WRITTEN: u8 = 2;
    const PAGE: u8 = 3;
    const ERROR: u8 = 4;
}

/// The one frame a server writes back on a request's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The id of the request this answers.
    pub id: RequestId,
    /// The outcome.
    pub status: Status,
    /// Which tier answered a read; `None` for writes and errors.
    pub tier: Option<Tier>,
    /// The payload.
    pub body: Body,
}

impl Response {
    /// A successful read.
    pub fn entry(id: RequestId, tier: Tier, entry: Entry) -> Self {
        Self {
            id,
            status: Status::Ok,
            tier: Some(tier),
            body: Body::Entry(entry),
        }
    }

    /// A read of a missing key.
    pub fn not_found(id: RequestId, tier: Tier) -> Self {
        Self {
            id,
            status: Status::NotFound,
            tier: Some(tier),
            body: Body::Empty,
        }
    }

    /// An acknowledged write or delete.
    pub fn written(id: RequestId, version: u64) -> Self {
        Self {
            id,
            status: Status::Ok,
            tier: Some(Tier::Origin),
            body: Body::Written { version },
        }
    }

    /// A LIST page.
    pub fn page(id: RequestId, page: ListPage) -> Self {
        Self {
            id,
            status: Status::Ok,
            tier: Some(Tier::Origin),
            body: Body::Page(page),
        }
    }

    /// A failure with a message. The message is cut to the protocol's limit.
    pub fn error(id: RequestId, status: Status, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_LEN {
            let mut end = MAX_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self {
            id,
            status,
            tier: None,
            body: Body::Error { message },
        }
    }

    /// The error message, for failed responses.
    pub fn message(&self) -> Option<&str> {
        match &self.body {
            Body::Error { message } => Some(message),
            _ => None,
        }
    }

    /// Writes the body; a value is returned rather than copied.
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) -> Option<Bytes> {
        buf.put_u64(self.id.0);
        buf.put_u8(self.status.code());
        buf.put_u8(self.tier.map_or(0, Tier::code));
        match &self.body {
            Body::Empty => buf.put_u8(Body::EMPTY),
            Body::Entry(entry) => {
                buf.put_u8(Body::ENTRY);
                buf.put_u64(entry.version);
                put_attributes(buf, entry.expiration, entry.metadata.as_ref());
                buf.put_u32(u32::try_from(entry.value.len()).unwrap_or(u32::MAX));
                return Some(entry.value.clone());
            }
            Body::Written { version } => {
                buf.put_u8(Body::WRITTEN);
                buf.put_u64(*version);
            }
            Body::Page(page) => {
                buf.put_u8(Body::PAGE);
                buf.put_u16(u16::try_from(page.keys.len()).unwrap_or(u16::MAX));
                for key in &page.keys {
                    wire::put_bytes16(buf, key.name.as_str().as_bytes());
                    put_attributes(buf, key.expiration, key.metadata.as_ref());
                }
                wire::put_bytes16(buf, page.cursor.as_deref().unwrap_or_default().as_bytes());
            }
            Body::Error { message } => {
                buf.put_u8(Body::ERROR);
                wire::put_bytes16(buf, message.as_bytes());
            }
        }
        None
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, ProtoError> {
        let id = RequestId(r.u64("request id")?);
        let status = Status::from_code(r.u8("status")?)?;
        let tier = match r.u8("tier")? {
            0 => None,
            code => Some(Tier::from_code(code)?),
        };
        let body = match r.u8("body kind")? {
            Body::EMPTY => Body::Empty,
            Body::ENTRY => {
                let version = r.u64("version")?;
                let (expiration, metadata) = read_attributes(r)?;
                let value = r.bytes32(MAX_VALUE_LEN, "value")?;
                Body::Entry(Entry {
                    version,
                    expiration,
                    metadata,
                    value,
                })
            }
            Body::WRITTEN => Body::Written {
                version: r.u64("version")?,
            },
            Body::PAGE => {
                let count = r.u16("key count")?;
                if count > MAX_LIST_LIMIT {
                    return Err(ProtoError::InvalidListLimit(count));
                }
                let mut keys = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let name = crate::cmd::read_key(r, "name")?;
                    let (expiration, metadata) = read_attributes(r)?;
                    keys.push(ListedKey {
                        name,
                        expiration,
                        metadata,
                    });
                }
                let cursor = r.string16(MAX_CURSOR_LEN, "cursor")?;
                let cursor = (!cursor.is_empty()).then_some(cursor);
                Body::Page(ListPage { keys, cursor })
            }
            Body::ERROR => Body::Error {
                message: r.string16(MAX_MESSAGE_LEN, "message")?,
            },
            code => {
                return Err(ProtoError::InvalidCode {
                    field: "body kind",
                    code,
                });
            }
        };
        Ok(Self {
            id,
            status,
            tier,
            body,
        })
    }
}

fn put_attributes(buf: &mut impl BufMut, expiration: Option<u64>, metadata: Option<&Metadata>) {
    let mut flags = 0;
    if expiration.is_some() {
        flags |= HAS_EXPIRATION;
    }
    if metadata.is_some() {
        flags |= HAS_METADATA;
    }
    buf.put_u8(flags);
    wire::put_optional_u64(buf, expiration);
    if let Some(metadata) = metadata {
        wire::put_bytes16(buf, metadata.as_bytes());
    }
}

fn read_attributes(r: &mut Reader) -> Result<(Option<u64>, Option<Metadata>), ProtoError> {
    let flags = wire::check_flags(
        r.u8("attribute flags")?,
        HAS_EXPIRATION | HAS_METADATA,
        "attribute",
    )?;
    let expiration = r.optional_u64(flags, HAS_EXPIRATION, "expiration")?;
    let metadata = read_optional_metadata(r, flags & HAS_METADATA != 0)?;
    Ok((expiration, metadata))
}
