//! The personal access token format: a prefix (`kw_pat_` unless the operator chose another, so
//! their scanners find their deployment's tokens), 30 base62 characters of randomness (178 bits),
//! then 6 base62 characters that are the CRC32 (IEEE) of those 30, left-padded with `0`. The
//! checksum lets a scanner tell a token from a look-alike, and keyward refuse a mistyped or made-up
//! one without reading the store.

use crate::secret::PersonalToken;

/// Base62 digits in value order: `0`–`9`, `A`–`Z`, `a`–`z`.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const RANDOM_LEN: usize = 30;
pub const CHECKSUM_LEN: usize = 6;
pub const DEFAULT_PREFIX: &str = "kw_pat_";

/// A deployment's token format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: String,
}

impl TokenFormat {
    /// A prefix of 2 to 16 characters from `a`–`z`, `0`–`9` and `_`, ending in `_`: it must stay
    /// apart from the base62 body, and from a JWT (`eyJ…`).
    pub fn new(prefix: &str) -> Result<Self, String> {
        let allowed = prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !(2..=16).contains(&prefix.len()) || !allowed || !prefix.ends_with('_') {
            return Err("must be 2 to 16 of a-z, 0-9 and `_`, ending in `_` (like `kw_pat_`)".into());
        }
        Ok(Self { prefix: prefix.to_owned() })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A fresh token.
    pub fn generate(&self) -> PersonalToken {
        use rand::Rng;
        let mut rng = rand::rng();
        let random: String = (0..RANDOM_LEN).map(|_| char::from(ALPHABET[rng.random_range(0..62)])).collect();
        PersonalToken::new(format!("{}{random}{}", self.prefix, checksum(&random)))
    }

    /// Whether `raw` is meant as one of this deployment's tokens (its prefix), well-formed or not.
    pub fn claims(&self, raw: &str) -> bool {
        raw.starts_with(&self.prefix)
    }

    /// Whether `raw` is a well-formed token of this format: prefix, length, alphabet, checksum.
    pub fn is_well_formed(&self, raw: &str) -> bool {
        let Some(body) = raw.strip_prefix(&self.prefix) else { return false };
        if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return false;
        }
        let (random, sum) = body.split_at(RANDOM_LEN);
        checksum(random) == sum
    }

    /// What the list shows of a token: its prefix and its last four characters.
    pub fn preview(&self, token: &str) -> String {
        let tail = token.get(token.len().saturating_sub(4)..).unwrap_or_default();
        format!("{}…{tail}", self.prefix)
    }

    /// The regular expression scanners match tokens with (README, SECURITY.md). The prefix needs
    /// no escaping: it is `[a-z0-9_]` only.
    pub fn pattern(&self) -> String {
        format!("{}[0-9A-Za-z]{{{RANDOM_LEN}}}[0-9A-Za-z]{{{CHECKSUM_LEN}}}", self.prefix)
    }
}

/// The CRC32 (IEEE) of `random`, in base62, left-padded with `0` to six digits.
pub fn checksum(random: &str) -> String {
    let mut value = crc32fast::hash(random.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_well_formed_and_one_changed_character_is_not() {
        let format = TokenFormat::new(DEFAULT_PREFIX).unwrap();
        let token = format.generate();
        let raw = token.expose();
        assert_eq!(raw.len(), DEFAULT_PREFIX.len() + 36);
        assert!(format.is_well_formed(raw), "{raw}");
        for at in DEFAULT_PREFIX.len()..raw.len() {
            let mut typo = raw.as_bytes().to_vec();
            typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
            assert!(!format.is_well_formed(std::str::from_utf8(&typo).unwrap()), "a typo at {at} passes");
        }
        assert!(!format.is_well_formed(&raw[..raw.len() - 1]));
        assert!(!format.is_well_formed(&format!("{raw}0")));
        assert!(!TokenFormat::new("acme_").unwrap().is_well_formed(raw), "another deployment's prefix");
    }

    #[test]
    fn the_checksum_is_crc32_in_base62_left_padded() {
        // CRC32 (IEEE) of "123456789" is 0xCBF43926, the standard check value; in base62, 3jZRME.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(checksum("123456789"), "3jZRME");
        assert_eq!(crc32fast::hash(b""), 0);
        assert_eq!(checksum(""), "000000");
    }

    #[test]
    fn a_prefix_stays_apart_from_the_body_and_from_a_jwt() {
        for bad in ["", "k", "KW_", "kw-pat_", "kw_pat", "eyJ", "a_very_long_prefix_"] {
            assert!(TokenFormat::new(bad).is_err(), "{bad}");
        }
        assert_eq!(TokenFormat::new("acme_").unwrap().pattern(), "acme_[0-9A-Za-z]{30}[0-9A-Za-z]{6}");
        let format = TokenFormat::new(DEFAULT_PREFIX).unwrap();
        assert_eq!(format.preview("kw_pat_abcdefghijklmnopqrstuvwxyz0123456789"), "kw_pat_…6789");
    }
}
