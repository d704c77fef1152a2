//! Random values keyward hands out: secrets (handles, states, verifiers) and record ids.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 256 random bits, base64url: a handle, a state or a PKCE verifier.
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A random identifier for ledger and audit entries (64 bits, hex).
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}
