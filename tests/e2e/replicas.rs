//! PostgreSQL only: three replicas on one database. A change that takes power away, made through
//! one replica, is seen by the others' exchange paths at once (announced with LISTEN/NOTIFY),
//! not after the key-cache TTL, which these replicas set to five minutes so it cannot be what
//! makes the tests pass.

use crate::harness::*;
use std::time::{Duration, Instant};
use tokenmint::proto::admin::v1::{
    AddRoleBindingRequest, DisableServiceUserRequest, EnableServiceUserRequest,
    RemoveRoleBindingRequest, RevokeApiKeyRequest,
};
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, auth_service_client::AuthServiceClient};
use tonic::transport::Channel;

/// Tries per behaviour; the issue asks for 100 out of 100.
const TRIES: usize = 100;
/// Longest wait allowed between a change returning and the other replicas honouring it.
const DEADLINE: Duration = Duration::from_millis(200);

/// Replicas with a TTL long enough that only a notification can refresh them, and throttling
/// off: every try ends with one refused exchange per replica, which is the point, not an attack.
const REPLICA_ARGS: &[&str] = &[
    "--key-cache-ttl",
    "300s",
    "--throttle-failures-per-address",
    "0",
];

struct Cluster {
    a: Server,
    others: Vec<(Server, AuthServiceClient<Channel>)>,
}

impl Cluster {
    async fn start() -> Option<Cluster> {
        let a = Server::start_with(Backend::Postgres, REPLICA_ARGS).await?;
        let mut others = Vec::new();
        for _ in 0..2 {
            let replica = a.replica(REPLICA_ARGS);
            let client = AuthServiceClient::new(replica.channel().await);
            others.push((replica, client));
        }
        Some(Cluster { a, others })
    }

    /// Exchanges on every other replica until each holds the key in its cache with a scope that
    /// `ready` accepts. A change that adds power (enabling, granting) reaches the others a few
    /// milliseconds after it returns, so this waits up to a second for it.
    async fn warm_until(&mut self, key_id: &str, secret: &str, ready: impl Fn(&str) -> bool) {
        for (_, client) in &mut self.others {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                let answer = client.exchange_api_key(exchange(key_id, secret)).await;
                match answer {
                    Ok(response) if ready(&response.get_ref().scope) => break,
                    other => assert!(
                        Instant::now() < deadline,
                        "the key does not exchange as expected before the change: {other:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// Exchanges on every other replica, so each holds the key in its cache.
    async fn warm(&mut self, key_id: &str, secret: &str) {
        self.warm_until(key_id, secret, |_| true).await;
    }

    /// `tries` times: a new key of `user_id`, cached on the other replicas, revoked through A;
    /// returns how long each other replica went on honouring it.
    async fn revocation_delays(
        &mut self,
        admin: &mut Admin,
        user_id: &str,
        tries: usize,
    ) -> Vec<Duration> {
        let mut delays = Vec::new();
        for i in 0..tries {
            let (key, secret) = create_key(admin, user_id, &format!("k{i}")).await;
            self.warm(&key.id, &secret).await;
            admin
                .revoke_api_key(RevokeApiKeyRequest {
                    id: key.id.clone(),
                    reason: "test".into(),
                })
                .await
                .unwrap();
            let changed = Instant::now();
            delays.extend(
                self.delays_until(changed, &key.id, &secret, is_refused)
                    .await,
            );
        }
        delays
    }

    /// After a change returned at `changed`, polls each other replica until `refused` holds for
    /// its answer; returns each replica's delay.
    async fn delays_until(
        &mut self,
        changed: Instant,
        key_id: &str,
        secret: &str,
        refused: impl Fn(&Result<String, tonic::Status>) -> bool,
    ) -> Vec<Duration> {
        let mut delays = Vec::new();
        for (_, client) in &mut self.others {
            loop {
                let answer = client
                    .exchange_api_key(exchange(key_id, secret))
                    .await
                    .map(|r| r.into_inner().scope);
                if refused(&answer) {
                    delays.push(changed.elapsed());
                    break;
                }
                assert!(
                    changed.elapsed() < Duration::from_secs(10),
                    "a replica still honoured the old state after 10 s"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        delays
    }
}

fn exchange(key_id: &str, secret: &str) -> ExchangeApiKeyRequest {
    ExchangeApiKeyRequest {
        key_id: key_id.into(),
        secret: secret.into(),
        ..Default::default()
    }
}

/// Asserts every delay is within the deadline and prints the distribution (recorded in the
/// README).
fn report(what: &str, mut delays: Vec<Duration>) {
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    eprintln!(
        "{what}: {} observations, p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let late = delays.iter().filter(|d| **d > DEADLINE).count();
    assert_eq!(
        late,
        0,
        "{what}: {late} of {} observations took longer than {DEADLINE:?} (max {:?})",
        delays.len(),
        at(1.0)
    );
}

fn is_refused(answer: &Result<String, tonic::Status>) -> bool {
    match answer {
        Ok(_) => false,
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn a_key_revoked_through_one_replica_is_refused_by_the_others_at_once() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let mut admin = cluster.a.admin().await;
    let user = create_user(&mut admin, "revoked-everywhere").await;
    let delays = cluster.revocation_delays(&mut admin, &user.id, TRIES).await;
    report("revocation", delays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn a_user_disabled_through_one_replica_is_refused_by_the_others_at_once() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let mut admin = cluster.a.admin().await;
    let user = create_user(&mut admin, "disabled-everywhere").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let id = user.id.clone();
    let mut delays = Vec::new();
    for _ in 0..TRIES {
        cluster.warm(&key.id, &secret).await;
        admin
            .disable_service_user(DisableServiceUserRequest { id: id.clone() })
            .await
            .unwrap();
        let changed = Instant::now();
        delays.extend(
            cluster
                .delays_until(changed, &key.id, &secret, is_refused)
                .await,
        );
        admin
            .enable_service_user(EnableServiceUserRequest { id: id.clone() })
            .await
            .unwrap();
    }
    report("disabled user", delays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn a_role_removed_through_one_replica_leaves_the_others_tokens_at_once() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let mut admin = cluster.a.admin().await;
    let user = create_user(&mut admin, "demoted-everywhere").await;
    let grant = || AddRoleBindingRequest {
        role_binding: Some(tokenmint::proto::admin::v1::RoleBinding {
            principal_id: user.id.clone(),
            role: tokenmint::proto::admin::v1::Role::Admin as i32,
            ..Default::default()
        }),
    };
    let binding = admin.add_role_binding(grant()).await.unwrap().into_inner();
    // Created while the user is an admin, so the key carries the role while the user holds it.
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let mut binding_id = binding.id;
    let mut delays = Vec::new();
    for _ in 0..TRIES {
        let carries_admin = |scope: &str| scope.split(' ').any(|r| r == "admin");
        cluster.warm_until(&key.id, &secret, carries_admin).await;
        admin
            .remove_role_binding(RemoveRoleBindingRequest { id: binding_id })
            .await
            .unwrap();
        let changed = Instant::now();
        let lost_admin = |answer: &Result<String, tonic::Status>| match answer {
            Ok(scope) => !scope.split(' ').any(|r| r == "admin"),
            Err(status) => panic!("the key still exchanges, narrowed: {status:?}"),
        };
        delays.extend(
            cluster
                .delays_until(changed, &key.id, &secret, lost_admin)
                .await,
        );
        binding_id = admin
            .add_role_binding(grant())
            .await
            .unwrap()
            .into_inner()
            .id;
    }
    report("removed role", delays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn a_killed_listener_is_replaced_the_cache_flushed_and_revocations_seen_at_once_again() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let gauge = |server: &Server, name: &'static str| {
        let url = format!("{}/metrics", server.http_url);
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    let flushes = |server| gauge(server, "tokenmint_key_cache_flushes");
    let mut admin = cluster.a.admin().await;
    let user = create_user(&mut admin, "after-the-gap").await;
    let (cached, cached_secret) = create_key(&mut admin, &user.id, "cached").await;
    cluster.warm(&cached.id, &cached_secret).await;
    let before = flushes(&cluster.others[0].0).await;
    assert!(before >= 1.0, "listening at start flushes once");

    // Every replica's listening connection, killed from the database side.
    let database = cluster.a.database().await;
    use sea_orm::ConnectionTrait;
    let killed = database
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        ))
        .await
        .unwrap();
    assert_eq!(killed.len(), 3, "one listener per replica");

    let deadline = Instant::now() + Duration::from_secs(10);
    while flushes(&cluster.others[0].0).await <= before {
        assert!(
            Instant::now() < deadline,
            "the lost listener was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster.others[0].0.logs().contains("key cache was flushed"),
        "the flush is logged"
    );
    assert_eq!(
        gauge(&cluster.others[0].0, "tokenmint_change_listener_up").await,
        1.0,
        "listening again"
    );
    // The flush dropped the cached key: the next exchange reads it from the database again.
    let misses = gauge(&cluster.others[0].0, "tokenmint_key_cache_misses").await;
    cluster.warm(&cached.id, &cached_secret).await;
    assert!(
        gauge(&cluster.others[0].0, "tokenmint_key_cache_misses").await > misses,
        "the key was no longer cached"
    );

    let delays = cluster.revocation_delays(&mut admin, &user.id, 10).await;
    report("revocation after a lost listener", delays);
}
