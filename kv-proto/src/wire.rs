//! Bounds-checked primitives under every body codec.
//!
//! [`Reader`] consumes a frame body held in [`Bytes`]: byte strings are split
//! off by reference count, never copied, and every length prefix is checked
//! against the bytes actually present and the field's limit before anything
//! is allocated. The `put_*` functions write the matching encodings.

use bytes::{Buf, BufMut, Bytes};

use crate::error::ProtoError;

/// A cursor over one frame body.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Reads from `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), ProtoError> {
        if self.buf.remaining() < n {
            return Err(ProtoError::Truncated { field });
        }
        Ok(())
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ProtoError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    /// A big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, ProtoError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    /// A big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, ProtoError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    /// A big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, ProtoError> {
        self.need(8, field)?;
        Ok(self.buf.get_u64())
    }

    /// A big-endian u128.
    pub fn u128(&mut self, field: &'static str) -> Result<u128, ProtoError> {
        self.need(16, field)?;
        Ok(self.buf.get_u128())
    }

    /// `len` bytes, shared with the frame buffer.
    pub fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, ProtoError> {
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }

    /// A byte string with a u8 length prefix, refused if longer than `max`.
    pub fn bytes8(&mut self, max: usize, field: &'static str) -> Result<Bytes, ProtoError> {
        let len = usize::from(self.u8(field)?);
        check_len(len, max, field)?;
        self.bytes(len, field)
    }

    /// A byte string with a u16 length prefix, refused if longer than `max`.
    pub fn bytes16(&mut self, max: usize, field: &'static str) -> Result<Bytes, ProtoError> {
        let len = usize::from(self.u16(field)?);
        check_len(len, max, field)?;
        self.bytes(len, field)
    }

    /// A byte string with a u32 length prefix, refused if longer than `max`.
    pub fn bytes32(&mut self, max: usize, field: &'static str) -> Result<Bytes, ProtoError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        check_len(len, max, field)?;
        self.bytes(len, field)
    }

    /// UTF-8 text with a u16 length prefix, refused if longer than `max`.
    pub fn string16(&mut self, max: usize, field: &'static str) -> Result<String, ProtoError> {
        utf8(self.bytes16(max, field)?, field)
    }

    /// A u64 present only when `flags` has `bit` set.
    pub fn optional_u64(
        &mut self,
        flags: u8,
        bit: u8,
        field: &'static str,
    ) -> Result<Option<u64>, ProtoError> {
        if flags & bit == 0 {
            return Ok(None);
        }
        self.u64(field).map(Some)
    }

    /// Fails unless the body has been read to its end.
    pub fn finish(self) -> Result<(), ProtoError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(ProtoError::TrailingBytes(n)),
        }
    }
}

/// Refuses a flags byte with bits outside `known`.
pub fn check_flags(flags: u8, known: u8, field: &'static str) -> Result<u8, ProtoError> {
    if flags & !known != 0 {
        return Err(ProtoError::UnknownFlags { field, flags });
    }
    Ok(flags)
}

fn check_len(len: usize, max: usize, field: &'static str) -> Result<(), ProtoError> {
    if len > max {
        return Err(match field {
            "key" | "name" => ProtoError::KeyTooLong { len },
            "value" => ProtoError::ValueTooLarge { len },
            "metadata" => ProtoError::MetadataTooLarge { len },
            "namespace" => ProtoError::InvalidNamespace,
            _ => ProtoError::FieldTooLong { field, len, max },
        });
    }
    Ok(())
}

/// Converts shared bytes to a `String`, refusing invalid UTF-8.
pub fn utf8(bytes: Bytes, field: &'static str) -> Result<String, ProtoError> {
    String::from_utf8(bytes.into()).map_err(|_| ProtoError::InvalidUtf8 { field })
}

/// Writes a byte string with a u8 length prefix. Callers pass validated fields.
pub fn put_bytes8(buf: &mut impl BufMut, bytes: &[u8]) {
    buf.put_u8(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    buf.put_slice(bytes);
}

/// Writes a byte string with a u16 length prefix. Callers pass validated fields.
pub fn put_bytes16(buf: &mut impl BufMut, bytes: &[u8]) {
    buf.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    buf.put_slice(bytes);
}

/// Writes `value` when present; its presence is recorded in a flags byte.
pub fn put_optional_u64(buf: &mut impl BufMut, value: Option<u64>) {
    if let Some(v) = value {
        buf.put_u64(v);
    }
}
