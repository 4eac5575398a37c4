//! Responses: a status, the tier that answered, and a body.

use bytes::{BufMut, Bytes};

use crate::cmd::put::read_optional_metadata;
use crate::error::ProtoError;
use crate::limits::{MAX_CURSOR_LEN, MAX_LIST_LIMIT, MAX_MESSAGE_LEN, MAX_VALUE_LEN};
use crate::request::RequestId;
use crate::types::{ErrorSource, Key, Metadata, Status, Tier};
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

/// Why a request failed: the error model every tier shares. The kind is the
/// response's [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Who is to blame, as seen by the tier that answers.
    pub source: ErrorSource,
    /// Whether a retry (of a write: with the same write id) might succeed.
    pub retryable: bool,
    /// A human-readable message naming what failed.
    pub message: String,
}

/// What a response carries besides its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Nothing: a GET that found no key, or a key swept long after its delete.
    Empty,
    /// A GET of a deleted key: its delete's version, so that caches can hold
    /// the miss at that version and refuse anything older.
    Deleted {
        /// The version of the delete.
        version: u64,
    },
    /// A GET's value.
    Entry(Entry),
    /// A PUT's or DELETE's acknowledgement, with the version the origin assigned.
    Written {
        /// The version of the write.
        version: u64,
        /// Whether this answers a retry of a write applied before: the
        /// version is the first attempt's, and newer writes may have
        /// followed, so caches must not take the written value from it.
        replayed: bool,
    },
    /// A LIST page.
    Page(ListPage),
    /// Why a request failed.
    Error(Failure),
    /// A GET whose `unless_version` is still current: the reader's copy
    /// (a value, or a delete's miss) stands.
    NotModified {
        /// The current version.
        version: u64,
    },
}

impl Body {
    const EMPTY: u8 = 0;
    const ENTRY: u8 = 1;
    const WRITTEN: u8 = 2;
    const PAGE: u8 = 3;
    const ERROR: u8 = 4;
    const DELETED: u8 = 5;
    const NOT_MODIFIED: u8 = 6;
    const RETRYABLE: u8 = 0b1;
    const REPLAYED: u8 = 0b1;
}

/// The one frame a server writes back on a request's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The id of the request this answers.
    pub id: RequestId,
    /// The outcome.
    pub status: Status,
    /// Which tier answered: for reads, the one that held the answer; writes
    /// and pages are answered by the origin; `None` for errors.
    pub tier: Option<Tier>,
    /// For a read answered from a cache: how long ago, in milliseconds, the
    /// origin read the copy (saturating). A cache below keeps it fresh for
    /// its TTL counted from then, so staleness bounds do not add up tier by
    /// tier. 0 for everything else.
    pub age_ms: u32,
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
            age_ms: 0,
            body: Body::Entry(entry),
        }
    }

    /// A read of a missing key.
    pub fn not_found(id: RequestId, tier: Tier) -> Self {
        Self {
            id,
            status: Status::NotFound,
            tier: Some(tier),
            age_ms: 0,
            body: Body::Empty,
        }
    }

    /// An acknowledged write or delete.
    pub fn written(id: RequestId, version: u64) -> Self {
        Self {
            id,
            status: Status::Ok,
            tier: Some(Tier::Origin),
            age_ms: 0,
            body: Body::Written {
                version,
                replayed: false,
            },
        }
    }

    /// The answer to a retry of a write applied before, with its first version.
    pub fn replayed(id: RequestId, version: u64) -> Self {
        Self {
            body: Body::Written {
                version,
                replayed: true,
            },
            ..Self::written(id, version)
        }
    }

    /// A read of a deleted key, with its delete's version.
    pub fn deleted(id: RequestId, tier: Tier, version: u64) -> Self {
        Self {
            id,
            status: Status::NotFound,
            tier: Some(tier),
            age_ms: 0,
            body: Body::Deleted { version },
        }
    }

    /// A GET whose reader's copy, at `version`, is still current.
    pub fn not_modified(id: RequestId, tier: Tier, version: u64) -> Self {
        Self {
            id,
            status: Status::Ok,
            tier: Some(tier),
            age_ms: 0,
            body: Body::NotModified { version },
        }
    }

    /// A LIST page.
    pub fn page(id: RequestId, page: ListPage) -> Self {
        Self {
            id,
            status: Status::Ok,
            tier: Some(Tier::Origin),
            age_ms: 0,
            body: Body::Page(page),
        }
    }

    /// A failure detected by the answering tier, blamed and marked retryable
    /// as its status implies. The message is cut to the protocol's limit.
    pub fn error(id: RequestId, status: Status, message: impl Into<String>) -> Self {
        Self::failure(
            id,
            status,
            status.default_source(),
            status.is_retryable(),
            message,
        )
    }

    /// A failure with every field given. The message is cut to the protocol's limit.
    pub fn failure(
        id: RequestId,
        status: Status,
        source: ErrorSource,
        retryable: bool,
        message: impl Into<String>,
    ) -> Self {
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
            age_ms: 0,
            body: Body::Error(Failure {
                source,
                retryable,
                message,
            }),
        }
    }

    /// This answer, to the request `id`.
    pub fn with_id(mut self, id: RequestId) -> Self {
        self.id = id;
        self
    }

    /// This answer, for a copy the origin read `age` ago.
    pub fn with_age(mut self, age: std::time::Duration) -> Self {
        self.age_ms = u32::try_from(age.as_millis()).unwrap_or(u32::MAX);
        self
    }

    /// This answer as relayed by the tier in front of the one that gave it: a
    /// failure the answering tier blamed on itself is now an upstream one.
    pub fn relayed(mut self) -> Self {
        if let Body::Error(failure) = &mut self.body
            && failure.source == ErrorSource::Local
        {
            failure.source = ErrorSource::Upstream;
        }
        self
    }

    /// The failure, for failed responses.
    pub fn failure_info(&self) -> Option<&Failure> {
        match &self.body {
            Body::Error(failure) => Some(failure),
            _ => None,
        }
    }

    /// The version a read's answer holds: the value's, the delete's for a
    /// deleted key, 0 for a key never written; `None` for anything else.
    pub fn read_version(&self) -> Option<u64> {
        match (self.status, &self.body) {
            (Status::Ok, Body::Entry(entry)) => Some(entry.version),
            (Status::Ok, Body::NotModified { version }) => Some(*version),
            (Status::NotFound, Body::Deleted { version }) => Some(*version),
            (Status::NotFound, Body::Empty) => Some(0),
            _ => None,
        }
    }

    /// The error message, for failed responses.
    pub fn message(&self) -> Option<&str> {
        self.failure_info().map(|f| f.message.as_str())
    }

    /// Whether a retry might succeed: what the failure says, else what its status implies.
    pub fn is_retryable(&self) -> bool {
        self.failure_info()
            .map_or(self.status.is_retryable(), |f| f.retryable)
    }

    /// Writes the body; a value is returned rather than copied.
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) -> Option<Bytes> {
        buf.put_u64(self.id.0);
        buf.put_u8(self.status.code());
        buf.put_u8(self.tier.map_or(0, Tier::code));
        buf.put_u32(self.age_ms);
        match &self.body {
            Body::Empty => buf.put_u8(Body::EMPTY),
            Body::Deleted { version } => {
                buf.put_u8(Body::DELETED);
                buf.put_u64(*version);
            }
            Body::NotModified { version } => {
                buf.put_u8(Body::NOT_MODIFIED);
                buf.put_u64(*version);
            }
            Body::Entry(entry) => {
                buf.put_u8(Body::ENTRY);
                buf.put_u64(entry.version);
                put_attributes(buf, entry.expiration, entry.metadata.as_ref());
                buf.put_u32(u32::try_from(entry.value.len()).unwrap_or(u32::MAX));
                return Some(entry.value.clone());
            }
            Body::Written { version, replayed } => {
                buf.put_u8(Body::WRITTEN);
                buf.put_u64(*version);
                buf.put_u8(if *replayed { Body::REPLAYED } else { 0 });
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
            Body::Error(failure) => {
                buf.put_u8(Body::ERROR);
                buf.put_u8(failure.source.code());
                buf.put_u8(if failure.retryable {
                    Body::RETRYABLE
                } else {
                    0
                });
                wire::put_bytes16(buf, failure.message.as_bytes());
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
        let age_ms = r.u32("age")?;
        let body = match r.u8("body kind")? {
            Body::EMPTY => Body::Empty,
            Body::DELETED => Body::Deleted {
                version: r.u64("version")?,
            },
            Body::NOT_MODIFIED => Body::NotModified {
                version: r.u64("version")?,
            },
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
            Body::WRITTEN => {
                let version = r.u64("version")?;
                let flags = wire::check_flags(r.u8("written flags")?, Body::REPLAYED, "written")?;
                Body::Written {
                    version,
                    replayed: flags & Body::REPLAYED != 0,
                }
            }
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
            Body::ERROR => {
                let source = ErrorSource::from_code(r.u8("error source")?)?;
                let flags = wire::check_flags(r.u8("error flags")?, Body::RETRYABLE, "error")?;
                Body::Error(Failure {
                    source,
                    retryable: flags & Body::RETRYABLE != 0,
                    message: r.string16(MAX_MESSAGE_LEN, "message")?,
                })
            }
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
            age_ms,
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
