//! What every request and answer goes through at the edge, before and after the operations:
//! text without NUL, protective headers, and who may read `/metrics`.

use poem::http::{HeaderMap, HeaderValue, header};

/// Whether a JSON body holds a NUL character: the escape `\u0000` in a string (outside an escaped
/// backslash), or a raw zero byte. PostgreSQL cannot store NUL in text, and no name, note or
/// label needs one; refusing it here gives one clear 400 instead of a failure deep inside.
pub fn json_has_nul(body: &[u8]) -> bool {
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            0 => return true,
            b'\\' => {
                if body[at + 1..].starts_with(b"u0000") {
                    return true;
                }
                // Skip the escaped character, so `\\u0000` (a backslash, then text) is not one.
                at += 2;
            }
            _ => at += 1,
        }
    }
    false
}

/// Whether the path or query carries a percent-encoded NUL (`%00`).
pub fn uri_has_nul(uri: &poem::http::Uri) -> bool {
    uri.path_and_query()
        .is_some_and(|pq| pq.as_str().contains("%00"))
}

/// Headers every answer carries: no content sniffing anywhere, no framing of the API docs (a
/// page that frames them could trick a signed-in trainer), and no caching of API answers, which
/// hold tokens and personal data.
pub fn protect(path: &str, headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path == "/docs" || path.starts_with("/docs/") {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    // Attachment downloads set their own (private) caching.
    if path.starts_with("/v1/") && !path.starts_with("/v1/attachments/") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Whether a request may read `/metrics`: always without a configured token, else only with
/// `Authorization: Bearer <token>` (compared in constant time).
pub fn metrics_allowed(expected: Option<&str>, authorization: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(given) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_in_json_text_and_nowhere_else() {
        assert!(json_has_nul(br#"{"email":"a\u0000@x.test"}"#));
        assert!(json_has_nul(b"{\"a\":\"\0\"}"));
        assert!(
            json_has_nul(br#"{"a":"\\\u0000"}"#),
            "an escaped backslash, then NUL"
        );
        assert!(
            !json_has_nul(br#"{"a":"\\u0000"}"#),
            "a backslash, then the text u0000"
        );
        assert!(!json_has_nul(br#"{"a":"plain"}"#));
        assert!(
            !json_has_nul(b"\\"),
            "a lone trailing backslash does not read past the end"
        );
    }

    #[test]
    fn metrics_token_is_checked_exactly() {
        assert!(metrics_allowed(None, None));
        assert!(metrics_allowed(Some("s3cret"), Some("Bearer s3cret")));
        assert!(!metrics_allowed(Some("s3cret"), Some("Bearer s3cre")));
        assert!(!metrics_allowed(Some("s3cret"), Some("s3cret")));
        assert!(!metrics_allowed(Some("s3cret"), None));
    }
}
