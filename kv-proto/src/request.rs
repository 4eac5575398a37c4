//! The request envelope: an id carried end to end, the time the caller
//! still waits, and one operation.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes};

use crate::cmd::{DeleteRequest, GetRequest, ListRequest, PutRequest};
use crate::error::ProtoError;
use crate::types::{Key, Namespace};
use crate::wire::Reader;

/// Identifies one client request across every tier it passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestId(pub u64);

impl RequestId {
    /// A random id.
    pub fn random() -> Self {
        Self(random_u64())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for RequestId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Self)
    }
}

/// Identifies one logical write (a PUT or DELETE) across every retry of it,
/// through any edge, regional node or origin: the origin applies a write id
/// at most once, and answers a retry with the version the first attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WriteId(pub u128);

impl WriteId {
    /// A random id.
    pub fn random() -> Self {
        Self(u128::from(random_u64()) << 64 | u128::from(random_u64()))
    }

    /// The id for a client's idempotency key: 32 hex digits (in either case)
    /// are taken as they are, any other text is hashed (FNV-1a, 128 bits), so
    /// that every edge maps one key to one id.
    pub fn from_idempotency_key(key: &str) -> Self {
        if key.len() == 32
            && key.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(id) = u128::from_str_radix(key, 16)
        {
            return Self(id);
        }
        const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
        Self(
            key.bytes()
                .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME)),
        )
    }
}

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A random u64 without a dependency on `rand`: std's randomly keyed hasher
/// fed a process-wide counter.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// The operation a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read a key.
    Get(GetRequest),
    /// Write a key.
    Put(PutRequest),
    /// Remove a key.
    Delete(DeleteRequest),
    /// List keys by prefix.
    List(ListRequest),
}

impl Op {
    const GET: u8 = 1;
    const PUT: u8 = 2;
    const DELETE: u8 = 3;
    const LIST: u8 = 4;

    /// The operation's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Get(_) => "get",
            Self::Put(_) => "put",
            Self::Delete(_) => "delete",
            Self::List(_) => "list",
        }
    }

    /// The namespace the operation addresses.
    pub fn namespace(&self) -> &Namespace {
        match self {
            Self::Get(r) => &r.namespace,
            Self::Put(r) => &r.namespace,
            Self::Delete(r) => &r.namespace,
            Self::List(r) => &r.namespace,
        }
    }

    /// The key the operation addresses, if it addresses one.
    pub fn key(&self) -> Option<&Key> {
        match self {
            Self::Get(r) => Some(&r.key),
            Self::Put(r) => Some(&r.key),
            Self::Delete(r) => Some(&r.key),
            Self::List(_) => None,
        }
    }
}

/// One request, sent as the only frame a client writes on a bidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Carried end to end, for tracing.
    pub id: RequestId,
    /// How long the caller still waits for the answer, counted from when the
    /// frame is sent (whole milliseconds on the wire, at most
    /// [`Request::MAX_BUDGET`]). A tier spends at most this, less a margin for
    /// the way back; zero means the caller has already given up.
    pub budget: Duration,
    /// What to do.
    pub op: Op,
}

impl Request {
    /// The budget of [`Request::new`].
    pub const DEFAULT_BUDGET: Duration = Duration::from_secs(5);
    /// The longest budget the wire carries; longer ones are sent as this.
    pub const MAX_BUDGET: Duration = Duration::from_millis(u32::MAX as u64);

    /// A request with a fresh random id and the default budget.
    pub fn new(op: Op) -> Self {
        Self {
            id: RequestId::random(),
            budget: Self::DEFAULT_BUDGET,
            op,
        }
    }

    /// The same request with another budget.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Writes the body; a PUT's value is returned rather than copied.
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) -> Option<Bytes> {
        buf.put_u64(self.id.0);
        buf.put_u32(u32::try_from(self.budget.as_millis()).unwrap_or(u32::MAX));
        match &self.op {
            Op::Get(r) => {
                buf.put_u8(Op::GET);
                r.encode_body(buf);
            }
            Op::Put(r) => {
                buf.put_u8(Op::PUT);
                return Some(r.encode_body(buf));
            }
            Op::Delete(r) => {
                buf.put_u8(Op::DELETE);
                r.encode_body(buf);
            }
            Op::List(r) => {
                buf.put_u8(Op::LIST);
                r.encode_body(buf);
            }
        }
        None
    }

    /// Decodes a request body. On failure the error comes with the request id
    /// when the body was long enough to hold one, so the answer can carry it.
    pub(crate) fn decode_body(r: &mut Reader) -> Result<Self, (Option<RequestId>, ProtoError)> {
        let id = RequestId(r.u64("request id").map_err(|e| (None, e))?);
        let budget_ms = r.u32("budget").map_err(|e| (Some(id), e))?;
        let op = Self::decode_op(r).map_err(|e| (Some(id), e))?;
        Ok(Self {
            id,
            budget: Duration::from_millis(budget_ms.into()),
            op,
        })
    }

    fn decode_op(r: &mut Reader) -> Result<Op, ProtoError> {
        Ok(match r.u8("op")? {
            Op::GET => Op::Get(GetRequest::decode_body(r)?),
            Op::PUT => Op::Put(PutRequest::decode_body(r)?),
            Op::DELETE => Op::Delete(DeleteRequest::decode_body(r)?),
            Op::LIST => Op::List(ListRequest::decode_body(r)?),
            code => return Err(ProtoError::InvalidCode { field: "op", code }),
        })
    }
}
