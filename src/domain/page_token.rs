//! Opaque page tokens (AIP-158): the last ID returned, bound to the query it came from so a token
//! cannot be replayed against another list.

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes a token for the page after `last_id` of the list identified by `query`.
pub fn encode(query: &str, last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1\n{query}\n{last_id}"))
}

/// Lists fetch `limit + 1` rows to learn whether another page follows: this drops the extra row
/// and returns the token for the next page, or an empty string on the last page.
pub fn next_page<T>(rows: &mut Vec<T>, limit: u64, query: &str, id: impl Fn(&T) -> &str) -> String {
    if rows.len() as u64 <= limit {
        return String::new();
    }
    rows.truncate(limit as usize);
    rows.last()
        .map(|row| encode(query, id(row)))
        .unwrap_or_default()
}

/// Decodes a token from the request; `None` for the first page.
pub fn decode(query: &str, token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Error::invalid(
            "page_token",
            "is not a page token from this list; start again without it",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(q), Some(last_id)) if q == query && !last_id.is_empty() => {
            Ok(Some(last_id.to_owned()))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_for_the_same_query() {
        let token = encode("org_1|state=ACTIVE", "su_9");
        assert_eq!(
            decode("org_1|state=ACTIVE", &token).unwrap(),
            Some("su_9".to_owned())
        );
    }

    #[test]
    fn token_from_another_query_is_refused() {
        let token = encode("org_1|", "su_9");
        assert!(decode("org_2|", &token).is_err());
        assert!(decode("org_1|", "garbage!").is_err());
    }

    #[test]
    fn next_page_drops_the_probe_row_and_points_after_the_last_kept_one() {
        let mut rows = vec!["a", "b", "c"];
        let token = next_page(&mut rows, 2, "q", |r| r);
        assert_eq!(rows, ["a", "b"]);
        assert_eq!(decode("q", &token).unwrap(), Some("b".to_owned()));
        let mut last = vec!["a", "b"];
        assert_eq!(next_page(&mut last, 2, "q", |r| r), "");
    }

    #[test]
    fn empty_token_means_first_page() {
        assert_eq!(decode("q", "").unwrap(), None);
    }
}
