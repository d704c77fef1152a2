//! The stored form of a sealed secret: versioned, self-describing bytes.
//!
//! Layout (format version 1), all lengths big-endian:
//! `"KW"` · version u8 · key provider u8 · key id (u16 len + bytes) · wrapped data key (u16 len +
//! bytes) · 12-byte nonce · ciphertext with its 16-byte GCM tag.

use super::{CryptoError, KeyProviderKind};

pub const FORMAT_VERSION: u8 = 1;
pub const NONCE_LEN: usize = 12;
const MAGIC: &[u8; 2] = b"KW";
const TAG_LEN: usize = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub version: u8,
    pub provider: KeyProviderKind,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("version", &self.version)
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl Sealed {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(8 + self.key_id.len() + self.wrapped_key.len() + NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.push(self.version);
        out.push(self.provider.tag());
        for field in [self.key_id.as_bytes(), &self.wrapped_key] {
            // Both fields are bounded far below u16::MAX (key ARNs ≤ 2 KiB, wrapped keys ≤ 256 B).
            out.extend_from_slice(&(field.len() as u16).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decodes stored bytes. Anything but a well-formed version-1 record is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader(bytes);
        if reader.take(2)? != MAGIC {
            return Err(CryptoError::Malformed);
        }
        let version = reader.take(1)?[0];
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let provider = KeyProviderKind::from_tag(reader.take(1)?[0]).ok_or(CryptoError::Malformed)?;
        let key_id = std::str::from_utf8(reader.prefixed()?).map_err(|_| CryptoError::Malformed)?.to_owned();
        let wrapped_key = reader.prefixed()?.to_vec();
        let nonce: [u8; NONCE_LEN] = reader.take(NONCE_LEN)?.try_into().map_err(|_| CryptoError::Malformed)?;
        let ciphertext = reader.0.to_vec();
        if key_id.is_empty() || wrapped_key.is_empty() || ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        Ok(Self { version, provider, key_id, wrapped_key, nonce, ciphertext })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        if self.0.len() < n {
            return Err(CryptoError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn prefixed(&mut self) -> Result<&'a [u8], CryptoError> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| CryptoError::Malformed)?);
        self.take(usize::from(len))
    }
}
