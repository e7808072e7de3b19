//! Property tests of everything that parses what a client or an operator sends: API-key
//! secrets, access tokens, page tokens, list filters, CIDR blocks and the TOML config file. The
//! same inputs are fuzzed without bounds by `fuzz/run.sh`; any crash found there becomes a case
//! here. Each parser must never panic, and must accept exactly what it produced itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use ring::rand::SystemRandom;
use std::ffi::OsString;
use std::sync::LazyLock;
use tokenmint::domain::api_keys::{parse_cidr, parse_key_state_filter};
use tokenmint::domain::audit::parse_filter;
use tokenmint::domain::page_token::PageTokens;
use tokenmint::domain::service_users::parse_state_filter;
use tokenmint_token::{
    AccessTokenClaims, ApiSecret, PublicKey, SigningAlgorithm, TokenSigner, TokenVerifier,
};

const ISSUER: &str = "https://tokenmint.test";
const NOW: i64 = 2_000_000_000;

/// One signer and its verifier for every case: generating keys per case would be most of the
/// run time.
static KEYS: LazyLock<(TokenSigner, TokenVerifier)> = LazyLock::new(|| {
    let pair = tokenmint_token::generate_ed25519(&SystemRandom::new()).unwrap();
    let signer = TokenSigner::ed25519(&pair.kid, &pair.private_pkcs8).unwrap();
    let verifier = TokenVerifier::new(
        ISSUER,
        [PublicKey {
            kid: &pair.kid,
            algorithm: SigningAlgorithm::EdDsa,
            public_key: &pair.public_key,
        }],
    );
    (signer, verifier)
});

fn claims(sub: String, scope: String) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub,
        aud: "api".into(),
        exp: NOW + 600,
        iat: NOW,
        nbf: NOW,
        jti: "tok_1".into(),
        client_id: "key_1".into(),
        scope,
        organization_id: "org_1".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // A failure prints its minimal input; it becomes a named case here, not a file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_a_secret_or_a_format_error(text in "\\PC{0,64}") {
        let _ = ApiSecret::parse(&text);
    }

    #[test]
    fn a_secret_with_one_character_changed_never_parses(position in 5usize..43, replacement in "[0-9A-Za-z]") {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        let mut chars: Vec<char> = secret.expose().chars().collect();
        let new = replacement.chars().next().unwrap();
        prop_assume!(chars[position] != new);
        chars[position] = new;
        let typo: String = chars.into_iter().collect();
        prop_assert!(ApiSecret::parse(&typo).is_err());
    }

    #[test]
    fn any_text_is_refused_as_a_token(text in "\\PC{0,300}") {
        prop_assert!(KEYS.1.verify(&text, None, NOW).is_err());
    }

    #[test]
    fn three_base64_parts_of_anything_are_refused_as_a_token(
        header in "[A-Za-z0-9_-]{0,80}", payload in "[A-Za-z0-9_-]{0,200}", signature in "[A-Za-z0-9_-]{0,90}",
    ) {
        let forged = format!("{header}.{payload}.{signature}");
        prop_assert!(KEYS.1.verify(&forged, None, NOW).is_err());
    }

    #[test]
    fn a_signed_token_verifies_and_any_changed_character_breaks_it(
        sub in "[a-z0-9_]{1,30}", scope in "[a-z ]{0,30}", position in any::<prop::sample::Index>(), flip in 1u8..64,
    ) {
        let claims = claims(sub, scope);
        let token = KEYS.0.sign(&claims).unwrap();
        prop_assert_eq!(&KEYS.1.verify(&token, Some("api"), NOW).unwrap(), &claims);
        let mut bytes = token.into_bytes();
        let i = position.index(bytes.len());
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let at = ALPHABET.iter().position(|c| *c == bytes[i]);
        prop_assume!(at.is_some());
        bytes[i] = ALPHABET[(at.unwrap() + flip as usize) % 64];
        let tampered = String::from_utf8(bytes).unwrap();
        // Changing a signature's last character can leave its decoded bytes unchanged (unused
        // low bits of the final base64 digit); anything else must fail.
        if let Ok(verified) = KEYS.1.verify(&tampered, Some("api"), NOW) {
            prop_assert_eq!(verified, claims);
            prop_assert_eq!(i, tampered.len() - 1);
        }
    }

    #[test]
    fn any_text_is_refused_as_a_page_token_or_none_when_empty(query in "\\PC{0,20}", token in "\\PC{0,120}") {
        let tokens = PageTokens::new(b"page token secret for tests");
        match tokens.decode(&query, &token, |_| true) {
            Ok(None) => prop_assert!(token.is_empty()),
            Ok(Some(_)) => prop_assert!(false, "an unsigned page token was accepted"),
            Err(_) => {}
        }
    }

    #[test]
    fn a_page_token_round_trips_for_its_query_only(query in "\\PC{0,40}", other in "\\PC{0,40}", last_id in "\\PC{1,40}") {
        let tokens = PageTokens::new(b"page token secret for tests");
        let token = tokens.encode(&query, &last_id);
        prop_assert_eq!(tokens.decode(&query, &token, |_| true).unwrap(), Some(last_id.clone()));
        if other != query {
            prop_assert!(tokens.decode(&other, &token, |_| true).is_err());
        }
        prop_assert!(tokens.decode(&query, &token, |_| false).is_err());
        let foreign = PageTokens::new(b"another server's secret");
        prop_assert!(foreign.decode(&query, &token, |_| true).is_err());
    }

    #[test]
    fn any_text_is_a_list_filter_or_an_error_naming_the_filter(filter in "\\PC{0,200}") {
        for error in [
            parse_filter(&filter, "org_1").err(),
            parse_state_filter(&filter).err(),
            parse_key_state_filter(&filter).err(),
        ].into_iter().flatten() {
            prop_assert!(format!("{error:?}").contains("filter"), "{error:?}");
        }
    }

    #[test]
    fn audit_filters_built_from_valid_terms_parse(
        action in proptest::option::of("action = [A-Z][A-Za-z]{2,20}"),
        actor in proptest::option::of("actor_id = su_[0-9a-z]{26}"),
        target in proptest::option::of("target_id = [a-z]{2,3}_[0-9a-z]{26}"),
        outcome in proptest::option::of(Just("outcome = OK".to_owned())),
        since in proptest::option::of(Just("time >= 2026-01-01T00:00:00Z".to_owned())),
        until in proptest::option::of(Just("time < 2027-01-01T00:00:00Z".to_owned())),
    ) {
        // Each term at most once: a repeated one is refused.
        let terms: Vec<String> =
            [action, actor, target, outcome, since, until].into_iter().flatten().collect();
        let filter = terms.join(" AND ");
        prop_assert!(parse_filter(&filter, "org_1").is_ok(), "{}", filter);
    }

    #[test]
    fn any_text_is_a_cidr_block_or_none(text in "\\PC{0,60}") {
        if let Some(net) = parse_cidr(&text) {
            // Normalised: parsing its own text gives it back.
            prop_assert_eq!(parse_cidr(&net.to_string()), Some(net));
        }
    }

    #[test]
    fn every_ipv4_block_parses_to_its_network(a in any::<[u8; 4]>(), prefix in 0u8..=32) {
        let text = format!("{}.{}.{}.{}/{prefix}", a[0], a[1], a[2], a[3]);
        let net = parse_cidr(&text).unwrap();
        prop_assert_eq!(net.prefix_len(), prefix);
        prop_assert_eq!(net, net.trunc());
        prop_assert!(net.contains(&std::net::IpAddr::from(a)));
    }

    #[test]
    fn any_config_file_gives_settings_or_an_error(content in "\\PC{0,300}") {
        let args: Vec<OsString> = ["tokenmint", "serve"].into_iter().map(OsString::from).collect();
        match tokenmint::config::apply_config(args.clone(), "t.toml", &content, |_| None) {
            // Settings only ever come after the subcommand, as flags.
            Ok(patched) => prop_assert!(patched.starts_with(&args)),
            Err(error) => prop_assert!(error.starts_with("config file t.toml"), "{}", error),
        }
    }

    #[test]
    fn config_files_of_known_settings_apply(grace in 1u32..3600, size in 1u32..1_000_000) {
        let content = format!("shutdown_grace = \"{grace}s\"\nkey_cache_size = {size}\n");
        let args: Vec<OsString> = ["tokenmint", "serve"].into_iter().map(OsString::from).collect();
        let patched = tokenmint::config::apply_config(args, "t.toml", &content, |_| None).unwrap();
        let expected_grace = OsString::from(format!("--shutdown-grace={grace}s"));
        let expected_size = OsString::from(format!("--key-cache-size={size}"));
        prop_assert!(patched.contains(&expected_grace));
        prop_assert!(patched.contains(&expected_size));
    }
}
