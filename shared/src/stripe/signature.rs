//! `Stripe-Signature` verification (`protocols-security.md` §5.1 and §5.4, the strictest of the
//! reference libraries): every `v1` is tried against every active endpoint secret with HMAC-SHA256
//! over `t.` + the raw body, compared in constant time; `v0` and unknown schemes are ignored; a
//! missing or repeated `t`, no `v1`, or a `v1` that is not 32 bytes of hex is malformed; and the
//! timestamp must be within 300 seconds of now, in either direction.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::model::ProblemCode;

/// Stripe's libraries' default tolerance; keyward also refuses timestamps this far in the future.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("The Stripe-Signature header is missing.")]
    Missing,
    #[error("The Stripe-Signature header is malformed: it needs one `t` and at least one `v1` signature.")]
    Malformed,
    #[error("No v1 signature in the Stripe-Signature header matches this payload.")]
    NoMatch,
    #[error("The Stripe-Signature timestamp is more than 300 seconds from now.")]
    OutsideTolerance,
}

impl SignatureError {
    pub fn code(self) -> ProblemCode {
        match self {
            Self::Missing => ProblemCode::SignatureMissing,
            Self::Malformed => ProblemCode::SignatureMalformed,
            Self::NoMatch => ProblemCode::SignatureMismatch,
            Self::OutsideTolerance => ProblemCode::SignatureExpired,
        }
    }
}

/// The parts of a header that matter: its timestamp and its `v1` signatures.
struct Header {
    timestamp: i64,
    v1: Vec<[u8; 32]>,
}

fn parse(header: &str) -> Result<Header, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (scheme, value) = part.trim().split_once('=').ok_or(SignatureError::Malformed)?;
        match scheme {
            "t" if timestamp.is_none() => {
                timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?);
            }
            "t" => return Err(SignatureError::Malformed),
            "v1" => {
                let mut signature = [0u8; 32];
                hex::decode_to_slice(value, &mut signature).map_err(|_| SignatureError::Malformed)?;
                v1.push(signature);
            }
            // `v0` (Stripe's fake test scheme) and anything unknown: ignored, so no downgrade.
            _ => {}
        }
    }
    match (timestamp, v1.is_empty()) {
        (Some(timestamp), false) => Ok(Header { timestamp, v1 }),
        _ => Err(SignatureError::Malformed),
    }
}

/// Verifies `header` for the raw `body` against any of `secrets` (several are active while one is
/// rolled) at `now` (epoch seconds); returns the signed timestamp.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[SecretString], now: i64) -> Result<i64, SignatureError> {
    let header = parse(header.ok_or(SignatureError::Missing)?)?;
    let timestamp = header.timestamp.to_string();
    let matched = secrets.iter().any(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // Every v1 is compared, in constant time: during a roll each secret has its own v1.
        header.v1.iter().fold(false, |found, v1| found | bool::from(expected.as_slice().ct_eq(v1)))
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    // `abs_diff`: a signed timestamp far from `now` must not overflow a subtraction.
    if now.abs_diff(header.timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(header.timestamp)
}

/// The endpoint secrets in a stored value: one `whsec_…`, or several separated by commas or
/// whitespace while a secret is being rolled.
pub fn secrets_of(value: &str) -> Vec<SecretString> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(SecretString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn headers_parse_strictly() {
        let sig = "a".repeat(64);
        assert!(parse(&format!("t=1,v1={sig}")).is_ok());
        assert!(parse(&format!("t=1, v1={sig},v0={sig},v9=zz")).is_ok(), "spaces, v0 and unknown schemes");
        for bad in [
            String::new(),
            format!("v1={sig}"),
            "t=1".to_owned(),
            format!("t=1,v0={sig}"),
            format!("t=1,t=1,v1={sig}"),
            format!("t=x,v1={sig}"),
            format!("t=1,v1={}", &sig[..62]),
            format!("t=1,v1={}zz", &sig[..62]),
            format!("t=1,v1{sig}"),
        ] {
            assert_eq!(parse(&bad).err(), Some(SignatureError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn any_active_secret_and_any_v1_verifies() {
        let body = br#"{"id":"evt_1"}"#;
        let (old, new) = ("whsec_old", "whsec_new");
        let secrets = secrets_of(&format!("{new}, {old}"));
        let header = format!("t=1000,v1={},v1={}", sign(new, 1000, body), sign(old, 1000, body));
        assert_eq!(verify(Some(&header), body, &secrets, 1000), Ok(1000));
        let only_old = format!("t=1000,v1={}", sign(old, 1000, body));
        assert_eq!(verify(Some(&only_old), body, &secrets, 1100), Ok(1000), "the first v1 alone also verifies");
        assert_eq!(verify(Some(&only_old), body, &secrets_of(new), 1000), Err(SignatureError::NoMatch));
        assert_eq!(verify(Some(&only_old), body, &secrets, 1301), Err(SignatureError::OutsideTolerance));
        assert_eq!(verify(Some(&only_old), body, &secrets, 699), Err(SignatureError::OutsideTolerance), "future");
        assert_eq!(verify(None, body, &secrets, 1000), Err(SignatureError::Missing));
    }

    /// Header pieces an attacker would combine: timestamps, schemes, hex of every length, separators.
    fn header_piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "t=-?[0-9]{0,20}",
            "v[0-9]=[0-9a-fA-F]{0,70}",
            "[a-z0-9]{0,3}=?[ -~]{0,10}",
            Just(",".to_owned()),
            Just(" ".to_owned()),
            Just("=".to_owned()),
        ]
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic_or_verify(header in "\\PC{0,200}", body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let secrets = secrets_of("whsec_current,whsec_previous");
            proptest::prop_assert!(verify(Some(&header), &body, &secrets, 1000).is_err());
        }

        #[test]
        fn signed_headers_verify_exactly_within_tolerance(t in proptest::num::i64::ANY, now in proptest::num::i64::ANY) {
            let body = br#"{"id":"evt_1"}"#;
            let header = format!("t={t},v1={}", sign("whsec_current", t, body));
            let within = now.abs_diff(t) <= 300;
            proptest::prop_assert_eq!(verify(Some(&header), body, &secrets_of("whsec_current"), now).is_ok(), within);
        }

        #[test]
        fn assembled_headers_never_panic_or_verify(pieces in proptest::collection::vec(header_piece(), 0..12), now in proptest::num::i64::ANY) {
            let header = pieces.join(",");
            let secrets = secrets_of("whsec_current");
            proptest::prop_assert!(verify(Some(&header), b"{}", &secrets, now).is_err(), "{header}");
        }
    }
}
