//! Cache-miss reads of exchange keys, coalesced: misses that arrive while earlier reads run
//! share one statement, so a burst of misses (a cold cache, a flush after a lost listener)
//! costs a few round trips instead of one each.

use crate::queries::find_exchange_keys;
use crate::{ExchangeKey, Store, StoreResult};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Most keys one statement reads.
pub const MAX_KEYS_PER_READ: usize = 64;

/// Coalesced reads running at once. While all run, new misses queue, and the next read takes
/// them together: batches grow with the load and stay at one key when the server is quiet.
const READERS: usize = 4;

/// A found key (or `None` for an unknown ID); a dropped sender means the shared read failed.
type Reply = oneshot::Sender<Option<ExchangeKey>>;

/// Misses waiting for a read, and the right to start one.
#[derive(Debug)]
pub(crate) struct KeyReads {
    waiting: Mutex<Vec<(String, Reply)>>,
    readers: Arc<Semaphore>,
    /// Statements run for coalesced reads, and keys they read: their ratio is the batch size.
    reads: std::sync::atomic::AtomicU64,
    keys_read: std::sync::atomic::AtomicU64,
}

impl Default for KeyReads {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
            readers: Arc::new(Semaphore::new(READERS)),
            reads: Default::default(),
            keys_read: Default::default(),
        }
    }
}

/// Coalesced reads so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyReadStats {
    /// Statements run.
    pub reads: u64,
    /// Keys asked for by them (a batch's size is `keys / reads`).
    pub keys: u64,
}

impl Store {
    /// The exchange view of key `key_id`, with its user and role bindings, in one statement
    /// that concurrent calls share (see the module comment). If the shared statement fails,
    /// each caller runs its own, so each sees its own error.
    pub async fn find_exchange_key(&self, key_id: &str) -> StoreResult<Option<ExchangeKey>> {
        let (reply, mut answer) = oneshot::channel();
        self.key_reads
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key_id.to_owned(), reply));
        let answered = tokio::select! {
            biased;
            answered = &mut answer => answered,
            permit = self.key_reads.readers.clone().acquire_owned() => {
                if let Ok(permit) = permit {
                    self.start_read(permit);
                }
                answer.await
            }
        };
        match answered {
            Ok(found) => Ok(found),
            Err(_) => Ok(find_exchange_keys(&self.db, &[key_id])
                .await?
                .remove(key_id)),
        }
    }

    /// Reads the waiting misses (up to [`MAX_KEYS_PER_READ`]) in one statement, holding
    /// `permit` until it is done. Runs as a task of its own, so a caller that gives up (a
    /// client that went away) does not take the others' answers with it.
    fn start_read(&self, permit: OwnedSemaphorePermit) {
        let batch: Vec<(String, Reply)> = {
            let mut waiting = self
                .key_reads
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            waiting.retain(|(_, reply)| !reply.is_closed());
            let n = waiting.len().min(MAX_KEYS_PER_READ);
            waiting.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
            let reads = &store.key_reads;
            reads
                .reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            reads
                .keys_read
                .fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
            // On failure the replies are dropped, and each caller reads alone.
            if let Ok(found) = find_exchange_keys(&store.db, &ids).await {
                for (id, reply) in batch {
                    let _ = reply.send(found.get(&id).cloned());
                }
            }
        });
    }

    /// How many coalesced reads ran, and for how many keys.
    pub fn key_read_stats(&self) -> KeyReadStats {
        use std::sync::atomic::Ordering::Relaxed;
        KeyReadStats {
            reads: self.key_reads.reads.load(Relaxed),
            keys: self.key_reads.keys_read.load(Relaxed),
        }
    }
}
