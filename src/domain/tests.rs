//! The domain's rules on a real store (a SQLite file) and the fake clock, no network: expiry
//! decided by the clock, exchange narrowing, and authorization through authenticated callers.

use crate::domain::api_keys::NewApiKey;
use crate::domain::bootstrap::BootstrapCredential;
use crate::domain::clock::{Clock, FakeClock};
use crate::domain::exchange::ExchangeRequest;
use crate::domain::key_cache::KeyCache;
use crate::domain::keyring::Keyring;
use crate::domain::page_token::PageTokens;
use crate::domain::principal::Principal;
use crate::domain::service_users::ServiceUserFields;
use crate::domain::{Settings, Tokenmint};
use crate::error::{Error, Reason};
use chrono::TimeDelta;
use ring::rand::SystemRandom;
use std::sync::Arc;
use std::time::Duration;
use tokenmint_store::{Store, StoreOptions};
use tokenmint_token::{KeyEncryptionKey, SecretHasher};

const ISSUER: &str = "https://tokenmint.test";

struct Fixture {
    app: Tokenmint,
    clock: Arc<FakeClock>,
    admin: BootstrapCredential,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&StoreOptions::new(url)).await.unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(FakeClock::new(chrono::Utc::now()));
    let rng = SystemRandom::new();
    let kek = KeyEncryptionKey::new(&[7u8; 32]).unwrap();
    let keyring = Keyring::load_or_create(&store, kek, ISSUER, Default::default(), clock.now())
        .await
        .unwrap();
    let app = Tokenmint {
        store,
        keyring: Arc::new(keyring),
        hasher: SecretHasher::new(&[9u8; 32]),
        page_tokens: PageTokens::new(&[9u8; 32]),
        key_cache: KeyCache::new(Duration::from_secs(5), 1000, 1000),
        throttle: crate::domain::throttle::Throttle::new(Default::default()),
        activity: Default::default(),
        failure_budget: crate::domain::audit::failure_budget(),
        settings: Settings {
            issuer: ISSUER.into(),
            default_token_lifetime: Duration::from_secs(3600),
            default_max_service_users: 1000,
            default_max_api_keys_per_service_user: 10,
            allowed_audiences: Vec::new(),
            housekeeping: Default::default(),
        },
        rng,
        clock: clock.clone(),
    };
    let admin = app.bootstrap().await.unwrap().unwrap();
    Fixture {
        app,
        clock,
        admin,
        _dir: dir,
    }
}

fn exchange(key_id: &str, secret: &str, scope: &str) -> ExchangeRequest {
    ExchangeRequest {
        key_id: key_id.into(),
        secret: secret.into(),
        scope: scope.into(),
        ..Default::default()
    }
}

impl Fixture {
    async fn caller(&self, scope: &str) -> Principal {
        let token = self
            .app
            .exchange_api_key(exchange(
                self.admin.key_id.as_str(),
                self.admin.secret.expose(),
                scope,
            ))
            .await
            .unwrap();
        self.app
            .authenticate(Some(&token.access_token))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_key_stops_exchanging_when_the_clock_passes_its_expiry() {
    let f = fixture().await;
    let request = || exchange(f.admin.key_id.as_str(), f.admin.secret.expose(), "");
    assert!(f.app.exchange_api_key(request()).await.is_ok());
    f.clock.advance(TimeDelta::days(366));
    assert!(matches!(
        f.app.exchange_api_key(request()).await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn a_token_stops_authenticating_when_the_clock_passes_its_expiry() {
    let f = fixture().await;
    let token = f
        .app
        .exchange_api_key(exchange(
            f.admin.key_id.as_str(),
            f.admin.secret.expose(),
            "",
        ))
        .await
        .unwrap();
    assert_eq!(token.expires_in, 3600);
    assert!(f.app.authenticate(Some(&token.access_token)).await.is_ok());
    f.clock.advance(TimeDelta::seconds(3600 + 31));
    assert!(f.app.authenticate(Some(&token.access_token)).await.is_err());
}

#[tokio::test]
async fn a_requested_scope_narrows_the_token_and_an_unheld_one_is_refused() {
    let f = fixture().await;
    let narrowed = f.caller("viewer").await;
    assert_eq!(
        narrowed.effective_roles(),
        [crate::domain::roles::Role::Viewer]
    );
    let refused = f
        .app
        .exchange_api_key(exchange(
            f.admin.key_id.as_str(),
            f.admin.secret.expose(),
            "viewer root",
        ))
        .await;
    assert!(matches!(refused, Err(Error::InvalidArgument(_))));
}

#[tokio::test]
async fn a_viewer_token_reads_but_cannot_manage() {
    let f = fixture().await;
    let viewer = f.caller("viewer").await;
    let user = f
        .app
        .create_service_user(
            &f.caller("").await,
            "",
            ServiceUserFields {
                name: "bot".into(),
                ..Default::default()
            },
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(f.app.get_service_user(&viewer, &user.user.id).await.is_ok());
    let denied = f
        .app
        .create_api_key(
            &viewer,
            NewApiKey {
                service_user_id: user.user.id.clone(),
                name: "k".into(),
                expires_in: Some(Duration::from_secs(86_400)),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(denied.reason(), Reason::RoleTooLow);
}

#[tokio::test]
async fn a_key_state_follows_the_clock() {
    use crate::domain::api_keys::{KeyState, key_state};
    let f = fixture().await;
    let owner = f.caller("").await;
    let key = f
        .app
        .get_api_key(&owner, f.admin.key_id.as_str())
        .await
        .unwrap();
    assert_eq!(key_state(&key, f.app.now()), KeyState::Active);
    f.clock.advance(TimeDelta::days(366));
    assert_eq!(key_state(&key, f.app.now()), KeyState::Expired);
}

#[tokio::test]
async fn a_key_judged_alive_is_never_given_a_token_that_ends_before_it_starts() {
    let f = fixture().await;
    let key_id = f.admin.key_id.as_str();
    let expires = f
        .app
        .store
        .find_exchange_key(key_id)
        .await
        .unwrap()
        .unwrap()
        .expire_time;
    // Two seconds before the key expires, with a second passing at every reading of the clock
    // (a cache miss reads it once more), as if each step of the exchange were slow.
    f.clock
        .advance(expires - f.clock.now() - TimeDelta::seconds(2));
    f.clock.step_on_every_reading(TimeDelta::seconds(1));
    let issued = f
        .app
        .exchange_api_key(exchange(key_id, f.admin.secret.expose(), ""))
        .await
        .unwrap();
    assert!(issued.expires_in >= 1, "lifetime {}", issued.expires_in);
    assert!(issued.expire_time <= expires.timestamp());
    let claims = f
        .app
        .keyring
        .verify(&issued.access_token, None, issued.expire_time - 1)
        .await
        .unwrap();
    assert!(
        claims.exp > claims.iat,
        "exp {} iat {}",
        claims.exp,
        claims.iat
    );
}
