//! Operator actions on signing keys: list them, and publish the next one ahead of its schedule.

use crate::domain::keyring::ScheduledKey;
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Result};

impl Tokenmint {
    /// Every signing key with its state now.
    pub async fn list_signing_keys(&self) -> Result<Vec<ScheduledKey>> {
        self.keyring.list(self.now()).await
    }

    /// Publishes the next signing key (see [`Keyring::rotate`](crate::domain::keyring::Keyring::rotate)),
    /// for an operator at the command line.
    pub async fn rotate_signing_key(&self, immediate: bool) -> Result<ScheduledKey> {
        let now = self.now();
        let next = self.keyring.rotate(now, immediate).await?;
        self.keyring
            .list(now)
            .await?
            .into_iter()
            .find(|k| k.key.kid == next.kid)
            .ok_or_else(|| Error::Internal("the new signing key vanished".into()))
    }

    /// [`rotate_signing_key`](Self::rotate_signing_key) through the API: superusers only.
    pub async fn rotate_signing_key_as(
        &self,
        caller: &Principal,
        immediate: bool,
    ) -> Result<ScheduledKey> {
        authz::superuser_only(caller, "rotate signing keys")?;
        self.rotate_signing_key(immediate).await
    }
}
