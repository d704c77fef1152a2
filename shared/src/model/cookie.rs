//! A cookie keyward sets in a browser. Every one is `__Host-` prefixed by its name, `HttpOnly`,
//! `Secure`, `SameSite=Lax` and `Path=/`; only its value and lifetime vary.

/// A cookie to set, or (empty, `max_age` 0) to clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub max_age_secs: i64,
}

impl Cookie {
    pub fn new(name: impl Into<String>, value: impl Into<String>, max_age_secs: i64) -> Self {
        Self { name: name.into(), value: value.into(), max_age_secs }
    }

    /// The cookie that removes `name` from the browser.
    pub fn cleared(name: impl Into<String>) -> Self {
        Self::new(name, "", 0)
    }
}
