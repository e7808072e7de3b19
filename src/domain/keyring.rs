//! Signing keys: loaded from the store and decrypted at start; generated on the very first start.

use crate::error::{Error, Result};
use ring::rand::SystemRandom;
use tokenmint_store::{SigningKey, Store};
use tokenmint_token::{KeyEncryptionKey, TokenSigner, TokenVerifier, generate_ed25519};

/// The key that signs new tokens and every key tokens may verify against.
#[derive(Debug)]
pub struct Keyring {
    /// Signs new tokens.
    pub signer: TokenSigner,
    /// Verifies tokens from any published key.
    pub verifier: TokenVerifier,
}

impl Keyring {
    /// Loads every signing key, generating and storing one when there is none. Every replica
    /// signs with the oldest unretired key, so replicas racing on first start agree.
    pub async fn load_or_create(
        store: &Store,
        kek: &KeyEncryptionKey,
        issuer: &str,
        rng: &SystemRandom,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self> {
        let mut keys = store.signing_keys().await?;
        if keys.iter().all(|k| k.retire_time.is_some()) {
            let pair = generate_ed25519(rng)?;
            let encrypted_private_key = kek.seal(rng, &pair.kid, &pair.private_pkcs8)?;
            store
                .insert_signing_key(SigningKey {
                    kid: pair.kid.clone(),
                    algorithm: pair.algorithm.to_owned(),
                    public_key: pair.public_key.clone(),
                    encrypted_private_key,
                    create_time: now,
                    retire_time: None,
                })
                .await?;
            tracing::info!(kid = %pair.kid, "generated a new Ed25519 signing key");
            keys = store.signing_keys().await?;
        }
        let active = keys
            .iter()
            .find(|k| k.retire_time.is_none())
            .ok_or_else(|| Error::Internal("no active signing key after creating one".into()))?;
        let pkcs8 = kek.open(&active.kid, &active.encrypted_private_key).map_err(|_| {
            Error::Internal(format!(
                "cannot decrypt signing key {}: the key-encryption key differs from the one it was stored with",
                active.kid
            ))
        })?;
        let signer = TokenSigner::ed25519(&active.kid, &pkcs8)?;
        let verifier = TokenVerifier::new(
            issuer,
            keys.iter()
                .map(|k| (k.kid.as_str(), k.public_key.as_slice())),
        );
        Ok(Self { signer, verifier })
    }
}
