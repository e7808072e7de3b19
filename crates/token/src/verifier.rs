//! Verifies access tokens: only our algorithm, only our keys, and `typ`, `exp`, `iss` and `aud`
//! all required.

use crate::{ACCESS_TOKEN_TYPE, AccessTokenClaims, JwkSet, SigningAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;

/// Why a token was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JWT, or a header we do not accept (`alg`, `typ`, missing `kid`).
    #[error("malformed token")]
    Malformed,
    /// The `kid` is not one of our keys.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature, a claim or the expiry did not check out.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies tokens against a set of public keys.
#[derive(Clone)]
pub struct TokenVerifier {
    issuer: String,
    /// Each key with the one algorithm it verifies: a token naming another `alg` is refused.
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    jwks: JwkSet,
    leeway_seconds: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .field("kids", &self.keys.keys())
            .finish()
    }
}

/// One published key: its kid, algorithm and public key (as [`Jwk::new`](crate::Jwk::new)
/// takes it).
pub struct PublicKey<'a> {
    pub kid: &'a str,
    pub algorithm: SigningAlgorithm,
    pub public_key: &'a [u8],
}

impl TokenVerifier {
    /// A verifier for tokens from `issuer` signed by any of `public_keys`. A key that cannot be
    /// read is left out (and so is its JWK) rather than failing the whole set.
    pub fn new<'a>(issuer: &str, public_keys: impl IntoIterator<Item = PublicKey<'a>>) -> Self {
        let mut keys = HashMap::new();
        let mut jwks = JwkSet::default();
        for key in public_keys {
            let Ok(jwk) = crate::Jwk::new(key.algorithm, key.kid, key.public_key) else {
                continue;
            };
            let decoding =
                match key.algorithm {
                    SigningAlgorithm::EdDsa => {
                        Ok((Algorithm::EdDSA, DecodingKey::from_ed_der(key.public_key)))
                    }
                    SigningAlgorithm::Es256 => DecodingKey::from_ec_components(&jwk.x, &jwk.y)
                        .map(|k| (Algorithm::ES256, k)),
                    SigningAlgorithm::Rs256 => DecodingKey::from_rsa_components(&jwk.n, &jwk.e)
                        .map(|k| (Algorithm::RS256, k)),
                };
            if let Ok(decoding) = decoding {
                keys.insert(key.kid.to_owned(), decoding);
                jwks.keys.push(jwk);
            }
        }
        Self {
            issuer: issuer.to_owned(),
            keys,
            jwks,
            leeway_seconds: 30,
        }
    }

    /// The public keys as a JWKS.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Verifies `token` at `now` (seconds since the epoch) and returns its claims. With
    /// `audience`, `aud` must equal it; without, any audience is accepted (introspection of
    /// tokens meant for other services). `exp` and `nbf` are checked here against `now`, with the
    /// leeway, rather than by jsonwebtoken against the system clock, so callers decide the time.
    pub fn verify(
        &self,
        token: &str,
        audience: Option<&str>,
        now: i64,
    ) -> Result<AccessTokenClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Malformed);
        }
        let kid = header.kid.ok_or(VerifyError::Malformed)?;
        let (algorithm, key) = self.keys.get(&kid).ok_or(VerifyError::UnknownKey)?;
        // The key decides the algorithm, never the token: `none`, or HS256 keyed with a public
        // key, are refused here.
        if header.alg != *algorithm {
            return Err(VerifyError::Malformed);
        }
        if *algorithm == Algorithm::ES256 {
            let signature = token
                .rsplit('.')
                .next()
                .and_then(crate::b64url_decode)
                .ok_or(VerifyError::Malformed)?;
            if !crate::ecdsa::is_low_s(&signature) {
                return Err(VerifyError::Invalid("non-canonical ECDSA signature".into()));
            }
        }
        let mut validation = Validation::new(*algorithm);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<AccessTokenClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        let leeway = i64::try_from(self.leeway_seconds).unwrap_or(0);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(VerifyError::Invalid("expired".into()));
        }
        if claims.nbf.saturating_sub(leeway) > now {
            return Err(VerifyError::Invalid("not yet valid".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TokenSigner, b64url, generate_ed25519};
    use ring::rand::SystemRandom;

    const ISSUER: &str = "https://tokenmint.test";

    fn claims(now: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "su_1".into(),
            aud: "api".into(),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            client_id: "ak_1".into(),
            scope: "viewer".into(),
            organization_id: "org_1".into(),
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap()
    }

    fn public(pair: &crate::SigningKeyPair) -> PublicKey<'_> {
        PublicKey {
            kid: &pair.kid,
            algorithm: SigningAlgorithm::parse(pair.algorithm).unwrap(),
            public_key: &pair.public_key,
        }
    }

    fn setup() -> (TokenSigner, TokenVerifier) {
        let pair = generate_ed25519(&SystemRandom::new()).unwrap();
        let signer = TokenSigner::ed25519(&pair.kid, &pair.private_pkcs8).unwrap();
        let verifier = TokenVerifier::new(ISSUER, [public(&pair)]);
        (signer, verifier)
    }

    #[test]
    fn signed_token_verifies_with_its_claims() {
        let (signer, verifier) = setup();
        let claims = claims(now());
        let token = signer.sign(&claims).unwrap();
        assert_eq!(verifier.verify(&token, Some("api"), now()).unwrap(), claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
    }

    #[test]
    fn wrong_audience_is_rejected() {
        let (signer, verifier) = setup();
        let token = signer.sign(&claims(now())).unwrap();
        assert!(matches!(
            verifier.verify(&token, Some("other"), now()),
            Err(VerifyError::Invalid(_))
        ));
        assert!(verifier.verify(&token, None, now()).is_ok());
    }

    #[test]
    fn expired_token_is_rejected() {
        let (signer, verifier) = setup();
        let mut c = claims(now() - 3600);
        c.exp = now() - 120;
        let token = signer.sign(&c).unwrap();
        assert!(matches!(
            verifier.verify(&token, Some("api"), now()),
            Err(VerifyError::Invalid(_))
        ));
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        let (signer, verifier) = setup();
        let mut c = claims(now());
        c.iss = "https://evil.test".into();
        let token = signer.sign(&c).unwrap();
        assert!(verifier.verify(&token, Some("api"), now()).is_err());
    }

    #[test]
    fn token_from_another_key_with_same_kid_is_rejected() {
        let (signer, _) = setup();
        let (_, other_verifier) = setup();
        let token = signer.sign(&claims(now())).unwrap();
        assert_eq!(
            other_verifier.verify(&token, Some("api"), now()),
            Err(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let (signer, verifier) = setup();
        let token = signer.sign(&claims(now())).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(now());
        forged.sub = "su_2".into();
        parts[1] = b64url(serde_json::to_string(&forged).unwrap().as_bytes());
        assert!(matches!(
            verifier.verify(&parts.join("."), Some("api"), now()),
            Err(VerifyError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_is_rejected() {
        let (_, verifier) = setup();
        let header = b64url(br#"{"alg":"none","typ":"at+jwt","kid":"x"}"#);
        let payload = b64url(serde_json::to_string(&claims(now())).unwrap().as_bytes());
        assert!(
            verifier
                .verify(&format!("{header}.{payload}."), Some("api"), now())
                .is_err()
        );
    }

    #[test]
    fn plain_jwt_typ_is_rejected() {
        let pair = generate_ed25519(&SystemRandom::new()).unwrap();
        let verifier = TokenVerifier::new(ISSUER, [public(&pair)]);
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(pair.kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &claims(now()),
            &jsonwebtoken::EncodingKey::from_ed_der(&pair.private_pkcs8),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&token, Some("api"), now()),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn expiry_is_judged_at_the_time_given() {
        let (signer, verifier) = setup();
        let token = signer.sign(&claims(now())).unwrap();
        assert!(
            verifier.verify(&token, None, now() + 300 + 29).is_ok(),
            "within leeway"
        );
        assert!(
            verifier.verify(&token, None, now() + 300 + 31).is_err(),
            "past leeway"
        );
        assert!(
            verifier.verify(&token, None, now() - 31).is_err(),
            "before nbf"
        );
    }

    #[test]
    fn every_algorithm_signs_tokens_that_verify_against_its_jwk() {
        for algorithm in [
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
        ] {
            let pair = crate::generate_signing_key(algorithm, &SystemRandom::new()).unwrap();
            let signer = TokenSigner::new(algorithm, &pair.kid, &pair.private_pkcs8).unwrap();
            let verifier = TokenVerifier::new(ISSUER, [public(&pair)]);
            let claims = claims(now());
            let token = signer.sign(&claims).unwrap();
            assert_eq!(
                verifier.verify(&token, Some("api"), now()).unwrap(),
                claims,
                "{algorithm}"
            );
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(format!("{:?}", header.alg), algorithm.jose_name());
            // An outside verifier given only the JWKS agrees.
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_str(&serde_json::to_string(&verifier.jwks().keys[0]).unwrap())
                    .unwrap();
            let key = DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = Validation::new(header.alg);
            validation.set_audience(&["api"]);
            assert!(jsonwebtoken::decode::<AccessTokenClaims>(&token, &key, &validation).is_ok());
            assert_eq!(verifier.jwks().keys[0].thumbprint(), pair.kid);
        }
    }

    #[test]
    fn es256_tokens_are_signed_and_accepted_only_with_a_low_s() {
        let pair =
            crate::generate_signing_key(SigningAlgorithm::Es256, &SystemRandom::new()).unwrap();
        let signer =
            TokenSigner::new(SigningAlgorithm::Es256, &pair.kid, &pair.private_pkcs8).unwrap();
        let verifier = TokenVerifier::new(ISSUER, [public(&pair)]);
        for _ in 0..32 {
            let token = signer.sign(&claims(now())).unwrap();
            assert!(verifier.verify(&token, Some("api"), now()).is_ok());
            let (input, signature) = token.rsplit_once('.').unwrap();
            let mut signature = crate::b64url_decode(signature).unwrap();
            assert!(crate::ecdsa::is_low_s(&signature));
            // (r, n − s): the other encoding of the same signature.
            crate::ecdsa::negate_s(&mut signature);
            let twin = format!("{input}.{}", b64url(&signature));
            assert!(
                matches!(
                    verifier.verify(&twin, Some("api"), now()),
                    Err(VerifyError::Invalid(_))
                ),
                "the high-s twin is refused"
            );
        }
    }

    #[test]
    fn a_token_naming_another_algorithm_than_its_key_is_refused() {
        let pair =
            crate::generate_signing_key(SigningAlgorithm::Rs256, &SystemRandom::new()).unwrap();
        let verifier = TokenVerifier::new(ISSUER, [public(&pair)]);
        // HS256 keyed with the public key's bytes: the classic confusion attack.
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(pair.kid.clone());
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(now()),
            &jsonwebtoken::EncodingKey::from_secret(&pair.public_key),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&token, Some("api"), now()),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn jwks_lists_every_key() {
        let (signer, verifier) = setup();
        let json = verifier.jwks().to_json();
        let set: JwkSet = serde_json::from_str(&json).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid, signer.kid());
        assert_eq!(set.keys[0].crv, "Ed25519");
    }
}
