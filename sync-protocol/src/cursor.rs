//! Pull cursors. Clients treat them as opaque strings; the server encodes the last server
//! version the client has fully received.

/// Encodes a version as a cursor, e.g. `c1.42`.
pub fn encode(version: i64) -> String {
    format!("c1.{version}")
}

/// Decodes a cursor; `None` if it was not made by [`encode`]. An absent cursor means "from the
/// beginning", which is version 0.
pub fn decode(cursor: &str) -> Option<i64> {
    let version: i64 = cursor.strip_prefix("c1.")?.parse().ok()?;
    (version >= 0).then_some(version)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(super::decode(&super::encode(42)), Some(42));
        assert_eq!(super::decode("c1.-1"), None);
        assert_eq!(super::decode("42"), None);
        assert_eq!(super::decode("c1.x"), None);
    }
}
