//! Keeping every replica's key cache current: a change announces what it made stale in its own
//! transaction, drops it here once committed, and every other replica drops it on receipt.

use crate::domain::Tokenmint;
use crate::error::Result;
use std::sync::Arc;
use tokenmint_store::{Invalidation, Tx};

impl Tokenmint {
    /// Commits `tx` with the announcement that `stale` is stale, then drops it from this
    /// replica's cache. On PostgreSQL the announcement is a NOTIFY in the same transaction, so it
    /// goes out exactly when the change becomes visible, to every replica.
    pub(crate) async fn commit_invalidating(&self, tx: Tx, stale: &[Invalidation]) -> Result<()> {
        for entry in stale {
            tx.announce_invalidation(entry).await?;
        }
        tx.commit().await?;
        for entry in stale {
            self.key_cache.forget(entry);
        }
        Ok(())
    }

    /// Applies other replicas' announcements to this replica's cache until the process ends.
    /// Falling behind the relay drops the whole cache, since messages were skipped. Subscribes
    /// before returning, so nothing relayed after this call is missed.
    pub fn follow_invalidations(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let mut invalidations = self.store.invalidations();
        async move {
            loop {
                match invalidations.recv().await {
                    Ok(stale) => self.key_cache.forget(&stale),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(
                            skipped,
                            "fell behind cache invalidations; flushing the key cache"
                        );
                        self.key_cache.forget_all();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
