//! The stored form of a sealed secret: versioned, self-describing bytes. All lengths big-endian.
//!
//! Format 2 (every new record): `"KW"` · `2` · branch key version (16 bytes) · salt (32) ·
//! key commitment (32) · nonce (12) · ciphertext with its 16-byte GCM tag. The record's key is
//! derived from its purpose's branch key and the salt (`docs/crypto.md`).
//!
//! Format 1 (records from before the keyring; they still open, and the rewrap job moves them):
//! `"KW"` · `1` · key provider u8 · key id (u16 len + bytes) · wrapped data key (u16 len + bytes) ·
//! nonce (12) · ciphertext with its tag.

use super::keyring::{BranchVersion, COMMITMENT_LEN, SALT_LEN};
use super::{CryptoError, KeyProviderKind};

pub const NONCE_LEN: usize = 12;
const MAGIC: &[u8; 2] = b"KW";
const TAG_LEN: usize = 16;

/// What makes a record's key.
#[derive(Clone, PartialEq, Eq)]
pub enum Wrapping {
    /// Format 1: a data key of its own, wrapped by the key provider.
    DataKey { provider: KeyProviderKind, key_id: String, wrapped_key: Vec<u8> },
    /// Format 2: a key derived from a branch key version and a salt, with its commitment.
    Branch { version: BranchVersion, salt: [u8; SALT_LEN], commitment: [u8; COMMITMENT_LEN] },
}

#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub wrapping: Wrapping,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Sealed");
        out.field("format", &self.format());
        match &self.wrapping {
            Wrapping::DataKey { provider, key_id, .. } => out.field("provider", provider).field("key_id", key_id),
            Wrapping::Branch { version, .. } => out.field("branch_version", version),
        };
        out.field("ciphertext_len", &self.ciphertext.len()).finish_non_exhaustive()
    }
}

impl Sealed {
    /// The format number written first in the bytes (and bound into the record's AAD).
    pub fn format(&self) -> u8 {
        match self.wrapping {
            Wrapping::DataKey { .. } => 1,
            Wrapping::Branch { .. } => 2,
        }
    }

    /// The branch key version a format-2 record was sealed under; `None` for format 1.
    pub fn branch_version(&self) -> Option<BranchVersion> {
        match self.wrapping {
            Wrapping::Branch { version, .. } => Some(version),
            Wrapping::DataKey { .. } => None,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.push(self.format());
        match &self.wrapping {
            Wrapping::DataKey { provider, key_id, wrapped_key } => {
                out.push(provider.tag());
                for field in [key_id.as_bytes(), wrapped_key] {
                    // Both are bounded far below u16::MAX (key ARNs ≤ 2 KiB, wrapped keys ≤ 256 B).
                    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
                    out.extend_from_slice(field);
                }
            }
            Wrapping::Branch { version, salt, commitment } => {
                out.extend_from_slice(version.as_bytes());
                out.extend_from_slice(salt);
                out.extend_from_slice(commitment);
            }
        }
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decodes stored bytes. Anything but a well-formed format 1 or 2 record is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader(bytes);
        if reader.take(2)? != MAGIC {
            return Err(CryptoError::Malformed);
        }
        let wrapping = match reader.take(1)?[0] {
            1 => {
                let provider = KeyProviderKind::from_tag(reader.take(1)?[0]).ok_or(CryptoError::Malformed)?;
                let key_id = std::str::from_utf8(reader.prefixed()?).map_err(|_| CryptoError::Malformed)?.to_owned();
                let wrapped_key = reader.prefixed()?.to_vec();
                if key_id.is_empty() || wrapped_key.is_empty() {
                    return Err(CryptoError::Malformed);
                }
                Wrapping::DataKey { provider, key_id, wrapped_key }
            }
            2 => Wrapping::Branch {
                version: BranchVersion::from_bytes(reader.array()?),
                salt: reader.array()?,
                commitment: reader.array()?,
            },
            other => return Err(CryptoError::UnsupportedVersion(other)),
        };
        let nonce = reader.array()?;
        let ciphertext = reader.0.to_vec();
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        Ok(Self { wrapping, nonce, ciphertext })
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

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        self.take(N)?.try_into().map_err(|_| CryptoError::Malformed)
    }

    fn prefixed(&mut self) -> Result<&'a [u8], CryptoError> {
        let len = u16::from_be_bytes(self.array()?);
        self.take(usize::from(len))
    }
}
