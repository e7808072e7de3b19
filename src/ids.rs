//! Resource ID newtypes: a type prefix and a lowercase ULID, so IDs sort by creation time and a
//! pasted ID of the wrong kind is refused before any lookup.

use std::fmt;

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every ID of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique ID.
            pub fn generate() -> Self {
                Self(format!("{}{}", Self::PREFIX, ulid::Ulid::new().to_string().to_ascii_lowercase()))
            }

            /// Parses an ID, refusing the wrong prefix or a malformed body.
            pub fn parse(text: &str) -> Option<Self> {
                let body = text.strip_prefix(Self::PREFIX)?;
                // 26 Crockford base-32 characters encode 130 bits; a ULID has 128, so the first
                // character is at most `7`. Larger bodies are not IDs this server made.
                let canonical = body.len() == 26
                    && body.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
                    && body.as_bytes()[0] <= b'7';
                (canonical && ulid::Ulid::from_string(body).is_ok()).then(|| Self(text.to_owned()))
            }

            /// Wraps an ID read back from the database.
            pub fn from_stored(text: String) -> Self {
                Self(text)
            }

            /// The ID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

resource_id!(
    /// An organization (tenant).
    OrganizationId,
    "org_"
);
resource_id!(
    /// A service user.
    ServiceUserId,
    "su_"
);
resource_id!(
    /// An API key; public, it travels with the secret.
    ApiKeyId,
    "ak_"
);
resource_id!(
    /// A role binding.
    RoleBindingId,
    "rb_"
);
resource_id!(
    /// A project inside an organization.
    ProjectId,
    "prj_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_carry_their_prefix() {
        let id = ApiKeyId::generate();
        assert!(id.as_str().starts_with("ak_"));
        assert_eq!(id.as_str().len(), 29);
        assert_eq!(ApiKeyId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn wrong_prefix_or_body_is_refused() {
        let id = ServiceUserId::generate();
        assert_eq!(ApiKeyId::parse(id.as_str()), None);
        assert_eq!(ServiceUserId::parse("su_"), None);
        assert_eq!(
            ServiceUserId::parse(&id.as_str().to_ascii_uppercase()),
            None
        );
        assert_eq!(ServiceUserId::parse(&format!("{id}x")), None);
    }

    #[test]
    fn a_body_beyond_the_ulid_range_is_refused() {
        assert_eq!(ServiceUserId::parse("su_8zzzzzzzzzzzzzzzzzzzzzzzzz"), None);
        assert!(ServiceUserId::parse("su_7zzzzzzzzzzzzzzzzzzzzzzzzz").is_some());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = OrganizationId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = OrganizationId::generate();
        assert!(a < b);
    }
}
