//! Opaque page tokens (AIP-158): the last ID returned, signed together with the query it came
//! from, so a token can neither be forged nor replayed against another list, and the cursor the
//! store receives is always an ID this server handed out.

use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// Signs and checks page tokens. Replicas sharing the secret pepper accept each other's tokens.
pub struct PageTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(<key>)")
    }
}

fn invalid() -> Error {
    Error::invalid(
        "page_token",
        "is not a page token from this list; start again without it",
    )
}

impl PageTokens {
    /// Page tokens signed with a key derived from `secret`, so the secret itself signs nothing
    /// but what it was made for.
    pub fn new(secret: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            b"tokenmint page tokens v1",
        );
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn signed_text(query: &str, last_id: &str) -> String {
        format!("v1\n{query}\n{last_id}")
    }

    /// A token for the page after `last_id` of the list identified by `query`.
    pub fn encode(&self, query: &str, last_id: &str) -> String {
        let tag = hmac::sign(&self.key, Self::signed_text(query, last_id).as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(last_id),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Lists fetch `limit + 1` rows to learn whether another page follows: this drops the extra
    /// row and returns the token for the next page, or an empty string on the last page.
    pub fn next_page<T>(
        &self,
        rows: &mut Vec<T>,
        limit: u64,
        query: &str,
        id: impl Fn(&T) -> &str,
    ) -> String {
        if rows.len() as u64 <= limit {
            return String::new();
        }
        rows.truncate(limit as usize);
        rows.last()
            .map(|row| self.encode(query, id(row)))
            .unwrap_or_default()
    }

    /// The last ID of the previous page, or `None` for the first page. The token must carry
    /// this server's signature for `query`, and the ID must be one `is_id` accepts.
    pub fn decode(
        &self,
        query: &str,
        token: &str,
        is_id: impl Fn(&str) -> bool,
    ) -> Result<Option<String>> {
        if token.is_empty() {
            return Ok(None);
        }
        let (id_part, tag_part) = token.split_once('.').ok_or_else(invalid)?;
        let id_bytes = URL_SAFE_NO_PAD.decode(id_part).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag_part).map_err(|_| invalid())?;
        let last_id = String::from_utf8(id_bytes).map_err(|_| invalid())?;
        hmac::verify(
            &self.key,
            Self::signed_text(query, &last_id).as_bytes(),
            &tag,
        )
        .map_err(|_| invalid())?;
        if !is_id(&last_id) {
            return Err(invalid());
        }
        Ok(Some(last_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(&[7u8; 32])
    }

    fn any(_: &str) -> bool {
        true
    }

    #[test]
    fn token_round_trips_for_the_same_query() {
        let token = tokens().encode("org_1|state=ACTIVE", "su_9");
        assert_eq!(
            tokens().decode("org_1|state=ACTIVE", &token, any).unwrap(),
            Some("su_9".to_owned())
        );
    }

    #[test]
    fn token_from_another_query_is_refused() {
        let token = tokens().encode("org_1|", "su_9");
        assert!(tokens().decode("org_2|", &token, any).is_err());
        assert!(tokens().decode("org_1|", "garbage!", any).is_err());
    }

    #[test]
    fn a_forged_cursor_is_refused() {
        let token = tokens().encode("q", "su_9");
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("su_\0"));
        assert!(tokens().decode("q", &forged, any).is_err());
        let other_key = PageTokens::new(&[8u8; 32]).encode("q", "su_9");
        assert!(tokens().decode("q", &other_key, any).is_err());
    }

    #[test]
    fn a_signed_cursor_that_is_not_an_id_is_refused() {
        let token = tokens().encode("q", "not an id");
        assert!(
            tokens()
                .decode("q", &token, |id| id.starts_with("su_"))
                .is_err()
        );
    }

    #[test]
    fn next_page_drops_the_probe_row_and_points_after_the_last_kept_one() {
        let mut rows = vec!["a", "b", "c"];
        let token = tokens().next_page(&mut rows, 2, "q", |r| r);
        assert_eq!(rows, ["a", "b"]);
        assert_eq!(
            tokens().decode("q", &token, any).unwrap(),
            Some("b".to_owned())
        );
        let mut last = vec!["a", "b"];
        assert_eq!(tokens().next_page(&mut last, 2, "q", |r| r), "");
    }

    #[test]
    fn empty_token_means_first_page() {
        assert_eq!(tokens().decode("q", "", any).unwrap(), None);
    }
}
