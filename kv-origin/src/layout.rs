//! Where each key lives in the object store, and LIST cursors.
//!
//! A key's UTF-8 bytes are written in unpadded base32hex (RFC 4648 §7,
//! digits `0-9A-V`), cut into path segments of [`SEGMENT_CHARS`] characters
//! (so no file name passes 255 bytes on a local disk), and the last segment
//! gets the suffix `.v`:
//!
//! ```text
//! {root}/{namespace}/{b32[0..240]}/{b32[240..480]}/…/{b32[last]}.v
//! ```
//!
//! base32hex keeps the bytes' order (its digits are in ASCII order), uses one
//! letter case (safe on case-insensitive disks), and is dense enough that the
//! longest key, 512 bytes, fits S3's 1024-byte object-name limit (820
//! characters). `.` sorts before every digit and before `/`, and a key that
//! is a prefix of a longer one ends in `.v` where the longer one continues
//! or sorts lower: so paths sort exactly as keys do, byte-wise, on every
//! backend, and no key's object is another key's directory. Slashes and any
//! other characters in keys are safe, since only base32hex reaches the store.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kv_proto::{Key, Namespace};
use object_store::path::Path;

/// Characters per path segment: 150 key bytes, a whole number of 5-byte groups.
pub const SEGMENT_CHARS: usize = 240;
const BASE32: data_encoding::Encoding = data_encoding::BASE32HEX_NOPAD;
const SUFFIX: &str = ".v";

/// Maps keys to paths under one root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: Path,
}

impl Layout {
    /// Keys live under `root` (the path part of the store URL).
    pub fn new(root: Path) -> Self {
        Self { root }
    }

    /// The directory of a namespace.
    pub fn namespace_dir(&self, namespace: &Namespace) -> Path {
        self.root.clone().join(namespace.as_str())
    }

    /// The object path of a key.
    pub fn object_path(&self, namespace: &Namespace, key: &Key) -> Path {
        let encoded = BASE32.encode(key.as_str().as_bytes());
        let mut path = self.namespace_dir(namespace);
        let segments = encoded.as_bytes().chunks(SEGMENT_CHARS).collect::<Vec<_>>();
        for (i, segment) in segments.iter().enumerate() {
            let segment = std::str::from_utf8(segment).unwrap_or_default();
            if i + 1 == segments.len() {
                path = path.join(format!("{segment}{SUFFIX}"));
            } else {
                path = path.join(segment);
            }
        }
        path
    }

    /// The key an object path under `namespace_dir` holds, or `None` for a
    /// path that is not a key's object (a temporary file, say).
    pub fn key_of(&self, namespace_dir: &Path, path: &Path) -> Option<Key> {
        let mut encoded = String::new();
        let mut parts = path.prefix_match(namespace_dir)?.peekable();
        while let Some(part) = parts.next() {
            let part = part.as_ref();
            if parts.peek().is_some() {
                if part.len() != SEGMENT_CHARS {
                    return None;
                }
                encoded.push_str(part);
            } else {
                encoded.push_str(part.strip_suffix(SUFFIX)?);
            }
        }
        let bytes = BASE32.decode(encoded.as_bytes()).ok()?;
        Key::new(String::from_utf8(bytes).ok()?).ok()
    }

    /// The directory every namespace lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The namespace and key of any object path under the root, or `None`
    /// for a path that is not a key's object.
    pub fn locate(&self, path: &Path) -> Option<(Namespace, Key)> {
        let namespace = path.prefix_match(&self.root)?.next()?;
        let namespace = Namespace::new(namespace.as_ref()).ok()?;
        let key = self.key_of(&self.namespace_dir(&namespace), path)?;
        Some((namespace, key))
    }

    /// A path that sorts before every key starting with `prefix`, and after
    /// as many others as the encoding allows: the namespace directory plus the
    /// prefix's whole base32 digits (a last, partial digit also holds bits of
    /// whatever follows the prefix, so it is left off).
    pub fn prefix_path(&self, namespace: &Namespace, prefix: &str) -> Path {
        let mut encoded = BASE32.encode(prefix.as_bytes());
        encoded.truncate(prefix.len() * 8 / 5);
        let mut path = self.namespace_dir(namespace);
        for segment in encoded
            .as_bytes()
            .chunks(SEGMENT_CHARS)
            .filter(|s| !s.is_empty())
        {
            path = path.join(std::str::from_utf8(segment).unwrap_or_default());
        }
        path
    }
}

/// An opaque LIST cursor: the last key a page returned.
pub fn encode_cursor(last_key: &Key) -> String {
    format!("1{}", URL_SAFE_NO_PAD.encode(last_key.as_str()))
}

/// The key a cursor resumes after, or `None` if the cursor is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<Key> {
    let rest = cursor.strip_prefix('1')?;
    let bytes = URL_SAFE_NO_PAD.decode(rest).ok()?;
    Key::new(String::from_utf8(bytes).ok()?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn layout() -> Layout {
        Layout::new(Path::from("kv"))
    }

    fn ns() -> Namespace {
        Namespace::new("ns").unwrap()
    }

    proptest! {
        #[test]
        fn a_prefix_path_sorts_before_every_key_with_that_prefix(
            prefix in "\\PC{0,200}", rest in "\\PC{0,100}",
        ) {
            let full = format!("{prefix}{rest}");
            prop_assume!(!full.is_empty() && full.len() <= 512);
            let path = layout().object_path(&ns(), &Key::new(full).unwrap());
            let lower = layout().prefix_path(&ns(), &prefix);
            prop_assert!(lower.as_ref() < path.as_ref(), "{} !< {}", lower, path);
        }

        #[test]
        fn paths_sort_like_keys_and_round_trip(
            a in "\\PC{1,300}", b in "\\PC{1,300}",
        ) {
            prop_assume!(a.len() <= 512 && b.len() <= 512);
            let (ka, kb) = (Key::new(a.clone()).unwrap(), Key::new(b.clone()).unwrap());
            let (pa, pb) = (layout().object_path(&ns(), &ka), layout().object_path(&ns(), &kb));
            prop_assert_eq!(a.as_bytes().cmp(b.as_bytes()), pa.as_ref().cmp(pb.as_ref()));
            let dir = layout().namespace_dir(&ns());
            prop_assert_eq!(layout().key_of(&dir, &pa), Some(ka));
        }
    }

    #[test]
    fn the_longest_key_fits_s3s_object_name_limit() {
        let path = layout().object_path(&ns(), &Key::new("\u{10FFFF}".repeat(128)).unwrap());
        assert!(path.as_ref().len() <= 900, "{} bytes", path.as_ref().len());
    }

    #[test]
    fn a_key_and_its_extension_never_collide() {
        let long = "x".repeat(SEGMENT_CHARS * 5 / 8);
        let short = Key::new(long.clone()).unwrap();
        let longer = Key::new(format!("{long}y")).unwrap();
        let (ps, pl) = (
            layout().object_path(&ns(), &short),
            layout().object_path(&ns(), &longer),
        );
        assert!(ps.as_ref() < pl.as_ref());
        assert!(!pl.as_ref().starts_with(&format!("{}/", ps.as_ref())));
    }

    #[test]
    fn slashes_and_unicode_stay_inside_one_segment() {
        let key = Key::new("a/b/../ü").unwrap();
        let path = layout().object_path(&ns(), &key);
        assert_eq!(path.parts().count(), 3, "{path}");
    }

    #[test]
    fn foreign_files_are_not_keys() {
        let dir = layout().namespace_dir(&ns());
        assert_eq!(layout().key_of(&dir, &dir.clone().join("C5H0.v#1")), None);
        assert_eq!(layout().key_of(&dir, &dir.clone().join("zz.v")), None);
        assert_eq!(layout().key_of(&dir, &dir.clone().join("C5H0")), None);
        // Non-canonical trailing bits would give a second name for one key.
        assert_eq!(layout().key_of(&dir, &dir.clone().join("C5H1.v")), None);
        assert!(layout().key_of(&dir, &dir.clone().join("C5H0.v")).is_some());
    }

    #[test]
    fn paths_locate_their_namespace_and_key() {
        let (namespace, key) = (ns(), Key::new("a/ü").unwrap());
        let path = layout().object_path(&namespace, &key);
        assert_eq!(layout().locate(&path), Some((namespace, key)));
        assert_eq!(layout().locate(&Path::from("kv/ns/C5H0.v#1")), None);
        assert_eq!(layout().locate(&Path::from("elsewhere/ns/C5H0.v")), None);
        assert_eq!(layout().locate(&Path::from("kv/.tierkv-origin.lock")), None);
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = Key::new("a/ü").unwrap();
        assert_eq!(decode_cursor(&encode_cursor(&key)), Some(key));
        assert_eq!(decode_cursor("garbage!"), None);
        assert_eq!(decode_cursor(""), None);
    }
}
