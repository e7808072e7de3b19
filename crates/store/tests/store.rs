//! The store on a real SQLite file: constraints the database enforces, units of work that are
//! all-or-nothing, and keyset pagination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, SubsecRound, Utc};
use tokenmint_store::entity::{api_key, organization, service_user};
use tokenmint_store::{ServiceUserChanges, Store, StoreError, StoreOptions};

struct Fixture {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&StoreOptions::new(url)).await.unwrap();
    store.migrate().await.unwrap();
    Fixture { store, _dir: dir }
}

fn now() -> chrono::DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn user(id: &str, org: &str, name: &str) -> service_user::Model {
    service_user::Model {
        id: id.into(),
        organization_id: org.into(),
        name: name.into(),
        display_name: String::new(),
        email: String::new(),
        description: String::new(),
        state: "ACTIVE".into(),
        creator: "su_creator".into(),
        revision: 1,
        create_time: now(),
        update_time: now(),
    }
}

fn key(id: &str, user_id: &str, org: &str) -> api_key::Model {
    api_key::Model {
        id: id.into(),
        service_user_id: user_id.into(),
        organization_id: org.into(),
        name: id.into(),
        description: String::new(),
        secret_hash: vec![1; 32],
        token_lifetime_seconds: 3600,
        allowed_cidrs: "[]".into(),
        scopes: "[]".into(),
        creator: "su_creator".into(),
        create_time: now(),
        expire_time: now() + Duration::days(1),
        last_used_time: None,
        last_used_address: None,
        revoke_time: None,
        revoke_reason: None,
    }
}

async fn with_org(f: &Fixture, id: &str) {
    let org = organization::Model {
        id: id.into(),
        name: id.into(),
        display_name: String::new(),
        max_service_users: 10,
        max_keys_per_user: 10,
        create_time: now(),
        update_time: now(),
    };
    f.store.create_organization(org).await.unwrap();
}

/// Organization `org_a`, its user `su_1` and that user's key `ak_1`.
async fn with_user_and_key(f: &Fixture) {
    with_org(f, "org_a").await;
    f.store
        .create_service_user(user("su_1", "org_a", "bot"))
        .await
        .unwrap();
    f.store
        .create_api_key(key("ak_1", "su_1", "org_a"))
        .await
        .unwrap();
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let f = store().await;
    f.store.migrate().await.unwrap();
    assert!(!f.store.has_service_users().await.unwrap());
}

#[tokio::test]
async fn the_database_enforces_unique_names_per_organization() {
    let f = store().await;
    with_org(&f, "org_a").await;
    with_org(&f, "org_b").await;
    f.store
        .create_service_user(user("su_1", "org_a", "bot"))
        .await
        .unwrap();
    f.store
        .create_service_user(user("su_2", "org_b", "bot"))
        .await
        .unwrap();
    let duplicate = f
        .store
        .create_service_user(user("su_3", "org_a", "bot"))
        .await;
    assert!(matches!(duplicate, Err(StoreError::AlreadyExists)));
}

#[tokio::test]
async fn organization_names_are_unique() {
    let f = store().await;
    with_org(&f, "org_a").await;
    let mut again = f.store.get_organization("org_a").await.unwrap();
    again.id = "org_z".into();
    assert!(matches!(
        f.store.create_organization(again).await,
        Err(StoreError::AlreadyExists)
    ));
}

#[tokio::test]
async fn reads_are_scoped_to_the_organization() {
    let f = store().await;
    with_org(&f, "org_a").await;
    f.store
        .create_service_user(user("su_1", "org_a", "bot"))
        .await
        .unwrap();
    assert!(f.store.get_service_user("org_a", "su_1").await.is_ok());
    assert!(matches!(
        f.store.get_service_user("org_b", "su_1").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn delete_with_active_keys_needs_force_and_force_revokes_then_deletes() {
    let f = store().await;
    with_user_and_key(&f).await;
    let refused = f
        .store
        .delete_service_user("org_a", "su_1", false, now())
        .await;
    assert!(matches!(refused, Err(StoreError::HasActiveKeys(1))));
    assert!(
        f.store
            .get_api_key("org_a", "ak_1")
            .await
            .unwrap()
            .revoke_time
            .is_none(),
        "a refused delete changes nothing"
    );
    let deleted = f
        .store
        .delete_service_user("org_a", "su_1", true, now())
        .await
        .unwrap();
    assert_eq!(deleted, ["ak_1"]);
    assert!(matches!(
        f.store.get_api_key("org_a", "ak_1").await,
        Err(StoreError::NotFound)
    ));
    assert!(f.store.find_key_principal("ak_1").await.unwrap().is_none());
}

#[tokio::test]
async fn stale_revision_refuses_the_update() {
    let f = store().await;
    with_org(&f, "org_a").await;
    f.store
        .create_service_user(user("su_1", "org_a", "bot"))
        .await
        .unwrap();
    let changes = ServiceUserChanges {
        display_name: Some("New".into()),
        ..Default::default()
    };
    let updated = f
        .store
        .update_service_user("org_a", "su_1", Some(1), changes.clone(), now())
        .await
        .unwrap();
    assert_eq!(
        (updated.user.revision, updated.user.display_name.as_str()),
        (2, "New")
    );
    let stale = f
        .store
        .update_service_user("org_a", "su_1", Some(1), changes, now())
        .await;
    assert!(matches!(stale, Err(StoreError::Stale)));
}

#[tokio::test]
async fn listing_after_an_id_continues_where_the_last_page_ended() {
    let f = store().await;
    with_org(&f, "org_a").await;
    for i in 0..5 {
        f.store
            .create_service_user(user(&format!("su_{i}"), "org_a", &format!("u{i}")))
            .await
            .unwrap();
    }
    let first = f
        .store
        .list_service_users("org_a", None, None, 2)
        .await
        .unwrap();
    let rest = f
        .store
        .list_service_users("org_a", None, Some(&first[1].user.id), 10)
        .await
        .unwrap();
    let ids: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|r| r.user.id.clone())
        .collect();
    assert_eq!(ids, ["su_0", "su_1", "su_2", "su_3", "su_4"]);
}

#[tokio::test]
async fn revoking_twice_keeps_the_first_revocation() {
    let f = store().await;
    with_user_and_key(&f).await;
    let first = f
        .store
        .revoke_api_key("org_a", "ak_1", "first", now())
        .await
        .unwrap();
    let second = f
        .store
        .revoke_api_key("org_a", "ak_1", "second", now() + Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(second.revoke_time, first.revoke_time);
    assert_eq!(second.revoke_reason.as_deref(), Some("first"));
}

/// A fresh store on every backend available: SQLite always, PostgreSQL when
/// `TOKENMINT_TEST_DATABASE_URL` names a server (a database of its own, dropped by the caller).
async fn every_backend() -> Vec<(Fixture, Option<String>)> {
    let mut stores = vec![(store().await, None)];
    if let Ok(base) = std::env::var("TOKENMINT_TEST_DATABASE_URL")
        && !base.is_empty()
    {
        use sea_orm::{ConnectionTrait, Database};
        let name = format!("tm_store_{}", ulid_like());
        let admin = Database::connect(&base).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let prefix = base.rsplit_once('/').map_or(base.as_str(), |(p, _)| p);
        let store = Store::connect(&StoreOptions::new(format!("{prefix}/{name}")))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        stores.push((Fixture { store, _dir: dir }, Some(name)));
    }
    stores
}

fn ulid_like() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn drop_database(name: Option<String>) {
    use sea_orm::{ConnectionTrait, Database};
    if let (Some(name), Ok(base)) = (name, std::env::var("TOKENMINT_TEST_DATABASE_URL")) {
        let admin = Database::connect(&base).await.unwrap();
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
}

#[tokio::test]
async fn finding_a_key_costs_one_statement_whether_or_not_it_exists() {
    for (f, database) in every_backend().await {
        with_org(&f, "org_a").await;
        let owner = |id: &str, role: &str| tokenmint_store::entity::role_binding::Model {
            id: id.into(),
            organization_id: "org_a".into(),
            principal_id: "su_1".into(),
            scope: "org_a".into(),
            role: role.into(),
            create_time: now(),
        };
        f.store
            .create_service_user(user("su_1", "org_a", "bot"))
            .await
            .unwrap();
        f.store
            .create_api_key(key("ak_1", "su_1", "org_a"))
            .await
            .unwrap();
        for binding in [owner("rb_1", "owner"), owner("rb_2", "viewer")] {
            f.store.add_role_binding(binding).await.unwrap();
        }

        let before = f.store.statements_executed();
        let found = f.store.find_key_principal("ak_1").await.unwrap().unwrap();
        let after_known = f.store.statements_executed();
        assert!(
            f.store
                .find_key_principal("ak_none")
                .await
                .unwrap()
                .is_none()
        );
        let after_unknown = f.store.statements_executed();

        assert_eq!(found.api_key.id, "ak_1");
        assert_eq!(found.user.id, "su_1");
        let mut roles: Vec<_> = found
            .role_bindings
            .iter()
            .map(|b| b.role.as_str())
            .collect();
        roles.sort();
        assert_eq!(roles, ["owner", "viewer"]);
        assert_eq!(after_known - before, 1, "a known key is one statement");
        assert_eq!(
            after_unknown - after_known,
            1,
            "an unknown key is one statement too"
        );
        drop_database(database).await;
    }
}
