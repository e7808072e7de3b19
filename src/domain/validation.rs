//! Input rules shared by every operation: names, free text, IDs, page sizes.

use crate::error::{Error, FieldViolation, Result};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Longest description or reason.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
/// Longest email (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Most characters of a caller's input an error message repeats back.
pub const MAX_ECHO_CHARS: usize = 64;
/// Page size when the request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page size a request may ask for.
pub const MAX_PAGE_SIZE: i32 = 1000;

/// Most violations one error reports; a request with thousands of bad entries must not produce
/// an error larger than clients accept.
pub const MAX_VIOLATIONS: usize = 16;

/// Collects the violations of a request so the caller sees them at once (up to
/// [`MAX_VIOLATIONS`], then a count of the rest).
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>, usize);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation of `field`.
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        if self.0.len() >= MAX_VIOLATIONS {
            self.1 += 1;
            return;
        }
        self.0.push(FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        });
    }

    /// Records the violation `check` returns, if any.
    pub fn check(&mut self, field: &str, check: std::result::Result<(), String>) {
        if let Err(description) = check {
            self.add(field, description);
        }
    }

    /// Records the violations of an invalid-argument error (other errors are bugs here and are
    /// recorded as a violation of `request`).
    pub fn absorb(&mut self, err: Error) {
        match err {
            Error::InvalidArgument(violations) => {
                for violation in violations {
                    self.add(&violation.field, violation.description);
                }
            }
            other => self.add("request", other.to_string()),
        }
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(mut self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        if self.1 > 0 {
            self.0.push(FieldViolation {
                field: "request".into(),
                description: format!("and {} more invalid entries", self.1),
            });
        }
        Err(Error::InvalidArgument(self.0))
    }
}

/// Lowercase DNS-label style: letters, digits and `-`, starting with a letter, not ending with `-`.
pub fn name(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err("is required".into());
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    let well_formed = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_lowercase()
        && !value.ends_with('-');
    if !well_formed {
        return Err(
            "must be lowercase letters, digits and '-', start with a letter and not end with '-'"
                .into(),
        );
    }
    Ok(())
}

/// Characters that render as nothing or move text around: format characters (bidi overrides,
/// zero-width spaces), line and paragraph separators, and the blank Hangul fillers.
fn invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || matches!(
        c,
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}'
    )
}

/// A caller's input quoted for an error message, cut to [`MAX_ECHO_CHARS`] so a huge value
/// cannot swell the error (and its trailers) past what clients accept.
pub fn echo(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(MAX_ECHO_CHARS).collect();
    if chars.next().is_some() {
        format!("{:?}…", head)
    } else {
        format!("{head:?}")
    }
}

/// Free text up to `max` characters, without control characters other than newlines and tabs,
/// and without invisible format characters (bidi overrides, zero-width spaces), which make text
/// read differently from what it is.
pub fn text(value: &str, max: usize) -> std::result::Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".into());
    }
    if let Some(c) = value.chars().find(|c| invisible(*c)) {
        return Err(format!(
            "must not contain invisible format characters such as U+{:04X}",
            c as u32
        ));
    }
    Ok(())
}

/// An optional email: empty, or one `@` with text on both sides and no spaces.
pub fn email(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    text(value, MAX_EMAIL_LEN)?;
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !value.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err("must be an email address like team@example.com".into()),
    }
}

/// Records what is wrong with a field mask: empty, or naming a field not in `updatable`.
pub fn update_mask(v: &mut Violations, mask: &[String], updatable: &[&str]) {
    let fields = updatable.join(", ");
    if mask.is_empty() {
        v.add(
            "update_mask",
            format!("is required; updatable fields: {fields}"),
        );
    }
    for path in mask.iter().filter(|p| !updatable.contains(&p.as_str())) {
        v.add(
            "update_mask",
            format!(
                "{} cannot be updated; updatable fields: {fields}",
                echo(path)
            ),
        );
    }
}

/// The revision an etag names; `None` for an empty etag. `field` names the etag in errors.
pub fn etag(field: &str, etag: &str) -> Result<Option<i64>> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| Error::invalid(field, "is not an etag returned by this service"))
}

/// A page size: 0 means the default; negative or over the maximum is refused.
pub fn page_size(value: i32) -> std::result::Result<u64, String> {
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => Ok(value as u64),
        _ => Err(format!("must be between 0 and {MAX_PAGE_SIZE}")),
    }
}

/// Parses a required ID field, naming the field when it is malformed.
pub fn id<T>(
    field: &str,
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
    prefix: &str,
) -> Result<T> {
    parse(value).ok_or_else(|| {
        Error::invalid(
            field,
            if value.is_empty() {
                "is required".to_owned()
            } else {
                format!("must be an ID like {prefix}…")
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_label_names_are_accepted() {
        for ok in ["a", "ci-deployer", "backup2", &"a".repeat(63)] {
            assert_eq!(name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "Admin",
            "1abc",
            "abc-",
            "a_b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_need_a_domain() {
        assert!(email("").is_ok());
        assert!(email("team@example.com").is_ok());
        assert!(email("team").is_err());
        assert!(email("@example.com").is_err());
        assert!(email("a b@example.com").is_err());
    }

    #[test]
    fn invisible_format_characters_are_refused() {
        for bad in [
            "evil\u{202E}gnp.exe",
            "zero\u{200B}width",
            "\u{FEFF}bom",
            "line\u{2028}separator",
            "hangul\u{3164}filler",
        ] {
            assert!(text(bad, 100).is_err(), "{bad:?}");
        }
        assert!(text("Überwachung, 監視, emoji 🚀", 100).is_ok());
    }

    #[test]
    fn thousands_of_violations_are_reported_as_a_few_and_a_count() {
        let mut v = Violations::new();
        for i in 0..10_000 {
            v.add(&format!("scopes[{i}]"), "bad");
        }
        let Err(Error::InvalidArgument(violations)) = v.finish() else {
            panic!("violations recorded");
        };
        assert_eq!(violations.len(), MAX_VIOLATIONS + 1);
        assert!(violations[MAX_VIOLATIONS].description.contains("9984 more"));
    }

    #[test]
    fn echoed_input_is_cut() {
        let long = "x".repeat(60_000);
        assert!(echo(&long).chars().count() <= MAX_ECHO_CHARS + 3);
        assert_eq!(echo("viewer"), "\"viewer\"");
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(7), Ok(7));
        assert!(page_size(-1).is_err());
        assert!(page_size(MAX_PAGE_SIZE + 1).is_err());
    }
}
