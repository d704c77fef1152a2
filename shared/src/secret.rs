//! Secret values: API keys, OAuth tokens, session handles and data keys.
//!
//! Each is its own type so it cannot be mixed up with another, prints as `Name(***)` in `Debug` and
//! `Display`, and is zeroized on drop (via `secrecy`). Reading the value is an explicit `expose()`.

use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::{Zeroize, Zeroizing};

/// Declares a string secret newtype with redacted formatting.
macro_rules! string_secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::from(value.into()))
            }

            /// The secret itself: call only where it must leave keyward (a provider call, a sealed
            /// record, a response to an authorized caller).
            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl From<SecretString> for $name {
            fn from(secret: SecretString) -> Self {
                Self(secret)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("***")
            }
        }
    };
}

string_secret!(
    /// A user's LLM provider API key.
    ApiKey
);
string_secret!(
    /// An OAuth access token (Auth0 or Google), or a bearer token presented to keyward.
    AccessToken
);
string_secret!(
    /// An OAuth refresh token (Auth0 or Google). Never leaves keyward.
    RefreshToken
);
string_secret!(
    /// A keyward session handle held by a client; stored only as a hash.
    SessionHandle
);
string_secret!(
    /// An OpenID Connect ID token (a signed statement of who the user is).
    IdToken
);
string_secret!(
    /// An RFC 8628 device code: a bearer credential for the token endpoint, never shown to a person.
    DeviceCode
);
string_secret!(
    /// A client secret (Auth0's web application, Google's OAuth client).
    ClientSecret
);
string_secret!(
    /// A keyward personal access token (`kw_pat_…`): shown once, stored only as a hash.
    PersonalToken
);

/// A token reported in a leak alert arrives in JSON; it is a secret from the first byte.
impl<'de> serde::Deserialize<'de> for PersonalToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretString::deserialize(d).map(Self::from)
    }
}

/// What keyward keeps of a secret it only has to recognise (a session handle, a device code, a
/// redirect's state): its SHA-256, hex. The secrets are 256 random bits, so the digest needs no salt.
pub fn digest(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `value` as JSON in a buffer of exactly its length, wiped when dropped. Serialized twice (once to
/// count): a growing buffer would leave each outgrown copy (a prefix of every key in it) in freed
/// memory.
pub fn wiped_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut json = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *json, value)?;
    Ok(json)
}

/// `buffer` as `Bytes` that wipe it when their last holder drops them: a body that may hold a
/// secret, handed to hyper, which queues `Bytes` for a vectored write without copying them.
pub fn wiped_bytes(buffer: Zeroizing<Vec<u8>>) -> bytes::Bytes {
    struct Wiped(Zeroizing<Vec<u8>>);
    impl AsRef<[u8]> for Wiped {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    bytes::Bytes::from_owner(Wiped(buffer))
}

/// `fields` as an `application/x-www-form-urlencoded` body (what `reqwest`'s `form` writes) in a
/// buffer of exactly its length, wiped when the request is done: token requests carry client
/// secrets, refresh tokens and PKCE verifiers.
pub fn wiped_form(fields: &[(&str, &str)]) -> bytes::Bytes {
    use url::form_urlencoded::byte_serialize;
    let pieces = || {
        fields.iter().enumerate().flat_map(|(i, (name, value))| {
            let separator = if i == 0 { "" } else { "&" };
            std::iter::once(separator)
                .chain(byte_serialize(name.as_bytes()))
                .chain(std::iter::once("="))
                .chain(byte_serialize(value.as_bytes()))
        })
    };
    let mut body = Zeroizing::new(Vec::with_capacity(pieces().map(str::len).sum()));
    pieces().for_each(|piece| body.extend_from_slice(piece.as_bytes()));
    wiped_bytes(body)
}

/// A 256-bit AES data key in plaintext, as returned by the key provider. Zeroized on drop.
pub struct DataKey(SecretBox<[u8; 32]>);

impl DataKey {
    pub const LEN: usize = 32;

    /// Takes the key bytes and wipes the caller's copy.
    pub fn from_slice(bytes: &mut [u8]) -> Option<Self> {
        let key: [u8; 32] = (&*bytes).try_into().ok()?;
        bytes.zeroize();
        Some(Self(SecretBox::new(Box::new(key))))
    }

    /// A key written in place by `fill` (a random source, a KDF), so no copy is left behind.
    pub fn filled_by(fill: impl FnOnce(&mut [u8; 32])) -> Self {
        let mut key = Box::new([0u8; 32]);
        fill(&mut key);
        Self(SecretBox::new(key))
    }

    pub fn random() -> Self {
        Self::filled_by(|key| rand::fill(key))
    }

    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiped_json_fills_a_buffer_of_exactly_its_length() {
        let value = serde_json::json!({"keys": {"openai": "sk-proj-".repeat(40)}, "regions": {}});
        let json = wiped_json(&value).unwrap();
        assert_eq!(json.as_slice(), serde_json::to_vec(&value).unwrap());
        assert_eq!(json.capacity(), json.len(), "never grown, so no outgrown copy was freed");
    }

    #[test]
    fn wiped_form_encodes_as_a_form_does() {
        let fields = [("grant_type", "authorization_code"), ("code_verifier", "a b&c=d/é~"), ("empty", "")];
        let body = wiped_form(&fields);
        let expected: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
        assert_eq!(std::str::from_utf8(&wiped_form(&[])).unwrap(), "");
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let key = ApiKey::new("sk-live-PLANTED-0123456789");
        let token = RefreshToken::new("v1.PLANTED-refresh");
        let printed = format!("{key:?} {key} {token:?} {token} {:?}", Some(&key));
        assert!(!printed.contains("PLANTED"), "{printed}");
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(key.expose(), "sk-live-PLANTED-0123456789");
    }

    #[test]
    fn data_key_takes_and_wipes_the_source() {
        let mut raw = [7u8; 32];
        let key = DataKey::from_slice(&mut raw).unwrap();
        assert_eq!(raw, [0u8; 32]);
        assert_eq!(key.expose(), &[7u8; 32]);
        assert_eq!(format!("{key:?}"), "DataKey(***)");
        assert!(DataKey::from_slice(&mut [1u8; 16]).is_none());
    }
}
