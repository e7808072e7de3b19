//! Signing keys, held in a swappable set: loaded and decrypted at start (a key is generated on
//! the very first start), re-read from the store periodically and, at most once per
//! [`UNKNOWN_KID_REFRESH_INTERVAL`], when a token names a key this replica has not seen, so a
//! key added by another replica verifies without a restart.

use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use ring::rand::SystemRandom;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenmint_store::{SigningKey, Store};
use tokenmint_token::{
    AccessTokenClaims, JwkSet, KeyEncryptionKey, TokenSigner, TokenVerifier, VerifyError,
    generate_ed25519,
};

/// Least time between two refreshes caused by unknown `kid`s, so made-up `kid`s cannot make
/// every call read the database.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The keys in force at one moment.
#[derive(Debug)]
pub struct KeySet {
    /// Signs new tokens.
    pub signer: Arc<TokenSigner>,
    /// Verifies tokens from any published key.
    pub verifier: TokenVerifier,
}

/// The live set of signing keys.
pub struct Keyring {
    keys: ArcSwap<KeySet>,
    store: Store,
    kek: KeyEncryptionKey,
    issuer: String,
    last_refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.load())
            .finish()
    }
}

impl Keyring {
    /// Loads every signing key, generating and storing one when there is none.
    pub async fn load_or_create(
        store: &Store,
        kek: KeyEncryptionKey,
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
        let set = key_set(&keys, &kek, issuer, None)?;
        Ok(Self {
            keys: ArcSwap::from_pointee(set),
            store: store.clone(),
            kek,
            issuer: issuer.to_owned(),
            last_refresh: Mutex::new(None),
        })
    }

    /// The keys in force now.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// The published public keys.
    pub fn jwks(&self) -> JwkSet {
        self.keys.load().verifier.jwks().clone()
    }

    /// Verifies `token` (see [`TokenVerifier::verify`]); a `kid` this replica does not know
    /// triggers a rate-limited refresh from the store and one more try.
    pub async fn verify(
        &self,
        token: &str,
        audience: Option<&str>,
        now: i64,
    ) -> std::result::Result<AccessTokenClaims, VerifyError> {
        match self.keys.load().verifier.verify(token, audience, now) {
            Err(VerifyError::UnknownKey) if self.may_refresh() => {}
            other => return other,
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "could not refresh signing keys");
        }
        self.keys.load().verifier.verify(token, audience, now)
    }

    fn may_refresh(&self) -> bool {
        let mut last = self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Re-reads the signing keys from the store and swaps them in.
    pub async fn refresh(&self) -> Result<()> {
        let keys = self.store.signing_keys().await?;
        let current = self.keys.load_full();
        let set = key_set(&keys, &self.kek, &self.issuer, Some(&current.signer))?;
        self.keys.store(Arc::new(set));
        Ok(())
    }

    /// Refreshes every `period` until the process ends.
    pub async fn refresh_every(self: Arc<Self>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "could not refresh signing keys");
            }
        }
    }
}

/// The key set for `keys`: every replica signs with the oldest unretired key, so replicas
/// racing on first start agree; `reuse` keeps an already decrypted signer for that key.
fn key_set(
    keys: &[SigningKey],
    kek: &KeyEncryptionKey,
    issuer: &str,
    reuse: Option<&Arc<TokenSigner>>,
) -> Result<KeySet> {
    let active = keys
        .iter()
        .find(|k| k.retire_time.is_none())
        .ok_or_else(|| Error::Internal("no active signing key".into()))?;
    let signer = match reuse {
        Some(signer) if signer.kid() == active.kid => Arc::clone(signer),
        _ => {
            let pkcs8 = kek.open(&active.kid, &active.encrypted_private_key).map_err(|_| {
                Error::Internal(format!(
                    "cannot decrypt signing key {}: the key-encryption key differs from the one it was stored with",
                    active.kid
                ))
            })?;
            Arc::new(TokenSigner::ed25519(&active.kid, &pkcs8)?)
        }
    };
    let verifier = TokenVerifier::new(
        issuer,
        keys.iter()
            .map(|k| (k.kid.as_str(), k.public_key.as_slice())),
    );
    Ok(KeySet { signer, verifier })
}
