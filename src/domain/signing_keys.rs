//! Operator actions on signing keys, and their schedule: list them, publish the next one ahead
//! of time, and (every refresh period, on every replica) add the next one when it is due.
//! Every rotation is an event on the platform's audit chain, written with it.

use crate::domain::audit::{Actor, details};
use crate::domain::keyring::ScheduledKey;
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

impl Tokenmint {
    /// Every signing key with its state now.
    pub async fn list_signing_keys(&self) -> Result<Vec<ScheduledKey>> {
        self.keyring.list(self.now()).await
    }

    /// Publishes the next signing key (see [`Keyring::rotate_in`](crate::domain::keyring::Keyring::rotate_in)),
    /// for an operator at the command line (`actor` empty) or a superuser.
    pub async fn rotate_signing_key(&self, actor: &Actor, immediate: bool) -> Result<ScheduledKey> {
        let now = self.now();
        let tx = self.store.begin().await?;
        let (next, changed) = self.keyring.rotate_in(&tx, now, immediate).await?;
        if changed {
            self.audit(
                &tx,
                "",
                actor,
                "RotateSigningKey",
                &next.kid,
                "OK",
                details([
                    ("algorithm", next.algorithm.clone()),
                    ("activate_time", next.activate_time.to_rfc3339()),
                    ("immediate", immediate.to_string()),
                ]),
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(kid = %next.kid, algorithm = %next.algorithm, activate_time = %next.activate_time, immediate, "next signing key published");
        self.keyring.refresh_at(now).await?;
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
        self.rotate_signing_key(&caller.into(), immediate).await
    }

    /// Adds the next key when the schedule says it is due. Every replica checks; the lock in
    /// [`Keyring::rotate_in`](crate::domain::keyring::Keyring::rotate_in) makes it one key between them.
    pub async fn rotate_signing_key_if_due(&self) -> Result<()> {
        if self.keyring.rotation_due(self.now()).await? {
            self.rotate_signing_key(&Actor::default(), false).await?;
        }
        Ok(())
    }

    /// Every `period` until the process ends: adds the next signing key when due, and re-reads
    /// the keys so this replica follows the others.
    pub async fn maintain_signing_keys(self: Arc<Self>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = self.rotate_signing_key_if_due().await {
                tracing::warn!(%error, "could not rotate the signing key");
            }
            if let Err(error) = self.keyring.refresh_at(self.now()).await {
                tracing::warn!(%error, "could not refresh signing keys");
            }
        }
    }
}
