//! Signing keys and their schedule. Every key is published (in the JWKS) from its creation,
//! signs from its activation time, and stays published after its successor activates until every
//! token it signed has expired. The set is held swappable: loaded and decrypted at start (a key
//! is generated on the very first start), re-read from the store periodically and, at most once
//! per [`UNKNOWN_KID_REFRESH_INTERVAL`], when a token names a key this replica has not seen. Which
//! key signs is decided from stored times and the clock alone, so replicas on one database agree.

use crate::domain::api_keys::MAX_TOKEN_LIFETIME;
use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};
use ring::rand::SystemRandom;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokenmint_store::{SigningKey, Store, Tx};
use tokenmint_token::{
    AccessTokenClaims, JwkSet, KeyEncryptionKey, PublicKey, SigningAlgorithm, TokenSigner,
    TokenVerifier, VerifyError, generate_signing_key,
};

/// Least time between two refreshes caused by unknown `kid`s, so made-up `kid`s cannot make
/// every call read the database.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How long a retired key stays published: the longest token lifetime plus the verifiers' clock
/// leeway, so every token it signed has expired everywhere before its key disappears.
pub fn retention() -> TimeDelta {
    TimeDelta::seconds(MAX_TOKEN_LIFETIME.as_secs() as i64 + 60)
}

/// When keys rotate and what new ones are.
#[derive(Clone, Copy, Debug)]
pub struct SigningSchedule {
    /// Algorithm of keys made from now on (existing keys keep theirs).
    pub algorithm: SigningAlgorithm,
    /// How long a key signs before the next one takes over; zero turns scheduled rotation off.
    pub rotation_period: Duration,
    /// How long a new key is published before it signs, so verifiers that cache the JWKS for at
    /// most this long know it before they meet a token it signed.
    pub publication_period: Duration,
}

impl Default for SigningSchedule {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::EdDsa,
            rotation_period: Duration::from_secs(30 * 86_400),
            publication_period: Duration::from_secs(3600),
        }
    }
}

/// Where a signing key stands at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKeyState {
    /// Published, not yet signing.
    Pending,
    /// Signs new tokens.
    Active,
    /// Replaced, still published while tokens it signed may be unexpired.
    Retired,
    /// No longer published.
    Expired,
}

impl SigningKeyState {
    /// The name operators see.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Retired => "RETIRED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// A stored key with its place in the schedule at one moment.
#[derive(Clone, Debug)]
pub struct ScheduledKey {
    pub key: SigningKey,
    pub state: SigningKeyState,
    /// When its successor took over (or takes over, for a known successor).
    pub replace_time: Option<DateTime<Utc>>,
}

/// The schedule of `keys` at `now`: each key's state. The active key is the one activated last
/// (ties broken by kid); a key withdrawn by hand (`retire_time`) is expired.
pub fn schedule(keys: &[SigningKey], now: DateTime<Utc>) -> Vec<ScheduledKey> {
    let mut order: Vec<&SigningKey> = keys.iter().filter(|k| k.retire_time.is_none()).collect();
    order.sort_by(|a, b| (a.activate_time, &a.kid).cmp(&(b.activate_time, &b.kid)));
    let mut scheduled: Vec<ScheduledKey> = keys
        .iter()
        .filter(|k| k.retire_time.is_some())
        .map(|k| ScheduledKey {
            key: k.clone(),
            state: SigningKeyState::Expired,
            replace_time: k.retire_time,
        })
        .collect();
    let active = order.iter().rposition(|k| k.activate_time <= now);
    for (i, key) in order.iter().enumerate() {
        let replace_time = order.get(i + 1).map(|next| next.activate_time);
        let state = match active {
            Some(a) if i == a => SigningKeyState::Active,
            Some(a) if i < a => match replace_time {
                Some(at) if at + retention() <= now => SigningKeyState::Expired,
                _ => SigningKeyState::Retired,
            },
            // Nothing has activated yet (a clock set back): the first key signs.
            None if i == 0 => SigningKeyState::Active,
            _ => SigningKeyState::Pending,
        };
        scheduled.push(ScheduledKey {
            key: (*key).clone(),
            state,
            replace_time,
        });
    }
    scheduled.sort_by(|a, b| (a.key.create_time, &a.key.kid).cmp(&(b.key.create_time, &b.key.kid)));
    scheduled
}

/// The keys in force at one moment.
#[derive(Debug)]
pub struct KeySet {
    /// The active and pending keys' signers, by activation time, oldest first.
    signers: Vec<(DateTime<Utc>, Arc<TokenSigner>)>,
    /// Verifies tokens from any published key.
    pub verifier: TokenVerifier,
}

impl KeySet {
    /// The signer in force at `now`.
    pub fn signer(&self, now: DateTime<Utc>) -> Result<&Arc<TokenSigner>> {
        self.signers
            .iter()
            .rev()
            .find(|(activate, _)| *activate <= now)
            .or(self.signers.first())
            .map(|(_, signer)| signer)
            .ok_or_else(|| Error::Internal("no signing key".into()))
    }
}

/// The live set of signing keys.
pub struct Keyring {
    keys: ArcSwap<KeySet>,
    store: Store,
    kek: KeyEncryptionKey,
    issuer: String,
    schedule: SigningSchedule,
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
    /// Loads every signing key, generating and storing one when none is in force.
    pub async fn load_or_create(
        store: &Store,
        kek: KeyEncryptionKey,
        issuer: &str,
        schedule: SigningSchedule,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let keyring = Self {
            keys: ArcSwap::from_pointee(KeySet {
                signers: Vec::new(),
                verifier: TokenVerifier::new(issuer, []),
            }),
            store: store.clone(),
            kek,
            issuer: issuer.to_owned(),
            schedule,
            last_refresh: Mutex::new(None),
        };
        let tx = store.begin().await?;
        tx.lock_signing_keys().await?;
        let keys = tx.signing_keys().await?;
        if keys.iter().all(|k| k.retire_time.is_some()) {
            let key = keyring.new_key(now, now)?;
            tracing::info!(kid = %key.kid, algorithm = %key.algorithm, "generated the first signing key");
            tx.insert_signing_key(key).await?;
        }
        tx.commit().await?;
        keyring.refresh_at(now).await?;
        if let Ok(signer) = keyring.current().signer(now)
            && signer.algorithm() != schedule.algorithm
        {
            tracing::warn!(
                kid = signer.kid(),
                signing = %signer.algorithm(),
                configured = %schedule.algorithm,
                "the key in force has another algorithm than configured; new keys will have the configured one: run `tokenmint signing-keys rotate` to publish one now"
            );
        }
        Ok(keyring)
    }

    /// The keys in force now.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// When the key `kid` started signing, if this replica holds its signer.
    pub fn activated_at(&self, kid: &str) -> Option<DateTime<Utc>> {
        self.keys
            .load()
            .signers
            .iter()
            .find(|(_, signer)| signer.kid() == kid)
            .map(|(activate, _)| *activate)
    }

    /// The published public keys.
    pub fn jwks(&self) -> JwkSet {
        self.keys.load().verifier.jwks().clone()
    }

    /// Signs `claims` with the key in force at `now`.
    pub fn sign(&self, claims: &AccessTokenClaims, now: DateTime<Utc>) -> Result<String> {
        Ok(self.keys.load().signer(now)?.sign(claims)?)
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
        let now_time = DateTime::from_timestamp(now, 0).unwrap_or_else(Utc::now);
        if let Err(error) = self.refresh_at(now_time).await {
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

    /// Re-reads the signing keys from the store and swaps in the set in force at `now`.
    pub async fn refresh_at(&self, now: DateTime<Utc>) -> Result<()> {
        let keys = self.store.signing_keys().await?;
        let current = self.keys.load_full();
        let set = key_set(&keys, &self.kek, &self.issuer, &current, now)?;
        self.keys.store(Arc::new(set));
        Ok(())
    }

    /// Every signing key with its state at `now`.
    pub async fn list(&self, now: DateTime<Utc>) -> Result<Vec<ScheduledKey>> {
        Ok(schedule(&self.store.signing_keys().await?, now))
    }

    /// Inside `tx`: adds the next signing key, published now and signing after the publication
    /// period, or at once when `immediate`. A key already waiting to sign is reused rather than
    /// a second one added (and, when `immediate`, activated now). Returns the next key and
    /// whether anything changed. The caller commits, then [`refresh_at`](Self::refresh_at).
    pub async fn rotate_in(
        &self,
        tx: &Tx,
        now: DateTime<Utc>,
        immediate: bool,
    ) -> Result<(SigningKey, bool)> {
        tx.lock_signing_keys().await?;
        let keys = tx.signing_keys().await?;
        let pending = schedule(&keys, now)
            .into_iter()
            .filter(|k| k.state == SigningKeyState::Pending)
            .map(|k| k.key)
            .next_back();
        Ok(match pending {
            Some(key) if !immediate => (key, false),
            Some(mut key) => {
                tx.activate_signing_key(&key.kid, now).await?;
                key.activate_time = now;
                (key, true)
            }
            None => {
                let activate = if immediate {
                    now
                } else {
                    now + self.publication_period()
                };
                let key = self.new_key(now, activate)?;
                tx.insert_signing_key(key.clone()).await?;
                (key, true)
            }
        })
    }

    /// Whether the next key is due at `now`: one publication period before the active key has
    /// signed for a rotation period, and none is waiting yet.
    pub async fn rotation_due(&self, now: DateTime<Utc>) -> Result<bool> {
        if self.schedule.rotation_period.is_zero() {
            return Ok(false);
        }
        let scheduled = schedule(&self.store.signing_keys().await?, now);
        if scheduled
            .iter()
            .any(|k| k.state == SigningKeyState::Pending)
        {
            return Ok(false);
        }
        let Some(active) = scheduled
            .iter()
            .find(|k| k.state == SigningKeyState::Active)
        else {
            return Ok(false);
        };
        let period = TimeDelta::from_std(self.schedule.rotation_period).unwrap_or(TimeDelta::MAX);
        Ok(now >= active.key.activate_time + period - self.publication_period())
    }

    fn publication_period(&self) -> TimeDelta {
        TimeDelta::from_std(self.schedule.publication_period).unwrap_or(TimeDelta::zero())
    }

    fn new_key(&self, now: DateTime<Utc>, activate: DateTime<Utc>) -> Result<SigningKey> {
        let rng = SystemRandom::new();
        let pair = generate_signing_key(self.schedule.algorithm, &rng)?;
        Ok(SigningKey {
            encrypted_private_key: self.kek.seal(&rng, &pair.kid, &pair.private_pkcs8)?,
            kid: pair.kid,
            algorithm: pair.algorithm.to_owned(),
            public_key: pair.public_key,
            create_time: now,
            retire_time: None,
            activate_time: activate,
        })
    }
}

/// The key set for `keys` at `now`: signers for the active and pending keys (reusing those of
/// `current` already decrypted), and a verifier for every published key.
fn key_set(
    keys: &[SigningKey],
    kek: &KeyEncryptionKey,
    issuer: &str,
    current: &KeySet,
    now: DateTime<Utc>,
) -> Result<KeySet> {
    let scheduled = schedule(keys, now);
    let mut signers = Vec::new();
    for entry in scheduled
        .iter()
        .filter(|k| matches!(k.state, SigningKeyState::Active | SigningKeyState::Pending))
    {
        let key = &entry.key;
        let signer = match current.signers.iter().find(|(_, s)| s.kid() == key.kid) {
            Some((_, signer)) => Arc::clone(signer),
            None => Arc::new(open_signer(kek, key)?),
        };
        signers.push((key.activate_time, signer));
    }
    signers.sort_by_key(|(activate, signer)| (*activate, signer.kid().to_owned()));
    if signers.is_empty() {
        return Err(Error::Internal("no signing key in force".into()));
    }
    let verifier = TokenVerifier::new(
        issuer,
        scheduled
            .iter()
            .filter(|k| k.state != SigningKeyState::Expired)
            .filter_map(|k| {
                Some(PublicKey {
                    kid: &k.key.kid,
                    algorithm: SigningAlgorithm::parse(&k.key.algorithm)?,
                    public_key: &k.key.public_key,
                })
            }),
    );
    Ok(KeySet { signers, verifier })
}

fn open_signer(kek: &KeyEncryptionKey, key: &SigningKey) -> Result<TokenSigner> {
    let algorithm = SigningAlgorithm::parse(&key.algorithm).ok_or_else(|| {
        Error::Internal(format!(
            "signing key {} has an unknown algorithm {}",
            key.kid, key.algorithm
        ))
    })?;
    let pkcs8 = kek.open(&key.kid, &key.encrypted_private_key).map_err(|_| {
        Error::Internal(format!(
            "cannot decrypt signing key {}: the key-encryption key differs from the one it was stored with",
            key.kid
        ))
    })?;
    Ok(TokenSigner::new(algorithm, &key.kid, &pkcs8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, create: i64, activate: i64) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            algorithm: "EdDSA".into(),
            public_key: Vec::new(),
            encrypted_private_key: Vec::new(),
            create_time: at(create),
            retire_time: None,
            activate_time: at(activate),
        }
    }

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap_or_default()
    }

    fn states(keys: &[SigningKey], now: i64) -> Vec<(String, SigningKeyState)> {
        schedule(keys, at(now))
            .into_iter()
            .map(|k| (k.key.kid, k.state))
            .collect()
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_after() {
        use SigningKeyState::*;
        let keys = [key("a", 0, 0), key("b", 10, 11)];
        assert_eq!(
            states(&keys, 10),
            [("a".into(), Active), ("b".into(), Pending)]
        );
        assert_eq!(
            states(&keys, 11),
            [("a".into(), Retired), ("b".into(), Active)]
        );
        // Kept for the longest token lifetime (24 h) plus a minute after it stopped signing.
        assert_eq!(
            states(&keys, 35),
            [("a".into(), Retired), ("b".into(), Active)]
        );
        assert_eq!(
            states(&keys, 36),
            [("a".into(), Expired), ("b".into(), Active)]
        );
    }

    #[test]
    fn a_key_withdrawn_by_hand_is_never_in_force() {
        let mut withdrawn = key("a", 0, 0);
        withdrawn.retire_time = Some(at(1));
        let keys = [withdrawn, key("b", 0, 0)];
        assert_eq!(
            states(&keys, 2),
            [
                ("a".into(), SigningKeyState::Expired),
                ("b".into(), SigningKeyState::Active)
            ]
        );
    }
}
