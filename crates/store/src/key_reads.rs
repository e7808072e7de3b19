//! Cache-miss reads of exchange keys, coalesced: misses that arrive while every reader is busy
//! share the next statement, so a burst of misses (a cold cache, a flush after a lost
//! listener) costs a few round trips instead of one each.

use crate::queries::find_exchange_keys;
use crate::{ExchangeKey, Store, StoreError, StoreResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Most keys one statement reads.
const MAX_KEYS_PER_READ: usize = 64;

/// Readers running at once, each on one pooled connection. While all are busy, new misses
/// queue, and the next statement takes them together: batches grow with the load and stay at
/// one key when the server is quiet. 2, 4 and 8 measured within 3 % of each other on this
/// machine's all-miss benchmark (docs/benchmarks.md, 2026-11-27); 4 leaves most of the pool
/// to the rest.
const READERS: usize = 4;

/// What one caller is told: its key, `None` for an unknown ID, or why the read failed.
type Reply = oneshot::Sender<StoreResult<Option<ExchangeKey>>>;

/// Misses waiting for a read, and the right to run one.
#[derive(Debug)]
pub(crate) struct KeyReads {
    waiting: Mutex<Vec<(String, Reply)>>,
    readers: Arc<Semaphore>,
    /// How long a caller waits for its answer before the database counts as unavailable.
    wait_limit: Duration,
    statements: AtomicU64,
    keys: AtomicU64,
}

impl KeyReads {
    /// Callers wait at most `wait_limit` for an answer: the pool's acquire timeout, the bound
    /// a statement of its own would have had on its wait for a connection.
    pub(crate) fn new(wait_limit: Duration) -> Self {
        Self {
            waiting: Mutex::default(),
            readers: Arc::new(Semaphore::new(READERS)),
            wait_limit,
            statements: AtomicU64::new(0),
            keys: AtomicU64::new(0),
        }
    }

    /// Up to [`MAX_KEYS_PER_READ`] waiting misses, oldest first, skipping callers that gave up.
    fn take_batch(&self) -> Vec<(String, Reply)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|(_, reply)| !reply.is_closed());
        let n = waiting.len().min(MAX_KEYS_PER_READ);
        waiting.drain(..n).collect()
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
    /// The exchange view of key `key_id`, with its user and role bindings, from a statement
    /// that concurrent calls share (see the module comment). A key whose stored values cannot
    /// be read fails alone; an error of the statement itself reaches every caller that shared
    /// it. No answer within the pool's acquire timeout counts as the database unavailable.
    pub async fn find_exchange_key(&self, key_id: &str) -> StoreResult<Option<ExchangeKey>> {
        let (reply, mut answer) = oneshot::channel();
        self.key_reads
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key_id.to_owned(), reply));
        // Either a running reader answers, or this caller becomes one. A reader reads until
        // nothing waits, so whatever was queued before it looked is answered.
        let answered = tokio::time::timeout(self.key_reads.wait_limit, async {
            tokio::select! {
                biased;
                answered = &mut answer => answered,
                permit = self.key_reads.readers.clone().acquire_owned() => {
                    if let Ok(permit) = permit {
                        self.start_reader(permit);
                    }
                    answer.await
                }
            }
        })
        .await;
        // A caller that gives up leaves its entry closed; readers skip it.
        let Ok(answered) = answered else {
            return Err(StoreError::Unavailable(sea_orm::DbErr::Custom(format!(
                "no key read answered within {:?}",
                self.key_reads.wait_limit
            ))));
        };
        match answered {
            Ok(found) => found,
            // The reader's task ended without answering (the runtime is shutting down, or it
            // panicked): read alone.
            Err(_) => find_exchange_keys(&self.db, &[key_id])
                .await?
                .remove(key_id)
                .transpose(),
        }
    }

    /// Reads waiting misses, a batch per statement, until none wait, holding `permit`
    /// throughout. Runs as a task of its own, so a caller that gives up (a client that went
    /// away) does not take the others' answers with it.
    fn start_reader(&self, permit: OwnedSemaphorePermit) {
        let batch = self.key_reads.take_batch();
        if batch.is_empty() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut batch = batch;
            while !batch.is_empty() {
                store.read_batch(batch).await;
                batch = store.key_reads.take_batch();
            }
        });
    }

    /// One statement for `batch`, and each caller's answer.
    async fn read_batch(&self, batch: Vec<(String, Reply)>) {
        self.key_reads.statements.fetch_add(1, Ordering::Relaxed);
        self.key_reads
            .keys
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        match find_exchange_keys(&self.db, &ids).await {
            Ok(found) => {
                for (id, reply) in batch {
                    let answer = match found.get(&id) {
                        None => Ok(None),
                        Some(Ok(key)) => Ok(Some(key.clone())),
                        Some(Err(error)) => Err(error.clone()),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// How many coalesced reads ran, and for how many keys.
    pub fn key_read_stats(&self) -> KeyReadStats {
        KeyReadStats {
            reads: self.key_reads.statements.load(Ordering::Relaxed),
            keys: self.key_reads.keys.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::StoreOptions;

    /// A migrated store on a fresh SQLite file whose pool waits `acquire_timeout`.
    async fn store(acquire_timeout: Duration) -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut options = StoreOptions::new(url);
        options.acquire_timeout = acquire_timeout;
        let store = Store::connect(&options).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn a_reader_reads_until_nothing_waits_even_past_its_first_batch() {
        let (store, _dir) = store(Duration::from_secs(5)).await;
        // More misses queued ahead than one statement takes, whose callers will not compete
        // for a reader: only a reader that goes on reads the last caller's key.
        let ahead: Vec<_> = (0..MAX_KEYS_PER_READ + 36)
            .map(|i| {
                let (reply, answer) = oneshot::channel();
                let mut waiting = store.key_reads.waiting.lock().unwrap();
                waiting.push((format!("ak_ahead_{i}"), reply));
                answer
            })
            .collect();

        let last = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            store.find_exchange_key("ak_last"),
        )
        .await
        .expect("the last caller is answered");

        assert!(last.unwrap().is_none());
        for answer in ahead {
            assert!(answer.await.unwrap().unwrap().is_none());
        }
        assert_eq!(
            store.key_read_stats(),
            KeyReadStats {
                reads: 2,
                keys: 101
            }
        );
    }

    #[tokio::test]
    async fn a_caller_waits_for_a_reader_no_longer_than_for_a_connection() {
        let (store, _dir) = store(Duration::from_millis(300)).await;
        let busy = store
            .key_reads
            .readers
            .clone()
            .acquire_many_owned(READERS as u32)
            .await
            .unwrap();
        let started = std::time::Instant::now();

        let waited = tokio::time::timeout(Duration::from_secs(10), store.find_exchange_key("ak_1"))
            .await
            .expect("the caller gives up on its own");

        assert!(
            matches!(waited, Err(StoreError::Unavailable(_))),
            "{waited:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(busy);
        assert!(store.find_exchange_key("ak_1").await.unwrap().is_none());
        assert_eq!(store.key_read_stats(), KeyReadStats { reads: 1, keys: 1 });
    }
}
