//! Times as the API shows them.

/// A Unix time as RFC 3339 in UTC (`2026-11-22T19:00:00Z`).
pub fn rfc3339(epoch_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch_secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
