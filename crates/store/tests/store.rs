//! The store on a real SQLite file (and PostgreSQL where configured): constraints the database
//! enforces, units of work that are all-or-nothing, typed values that round-trip or fail
//! closed, and keyset pagination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, SubsecRound, Utc};
use tokenmint_store::{
    ApiKey, Organization, Role, RoleBinding, RoleScope, ServiceUser, ServiceUserState, Store,
    StoreError, StoreOptions,
};

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

fn user(id: &str, org: &str, name: &str) -> ServiceUser {
    ServiceUser {
        id: id.into(),
        organization_id: org.into(),
        name: name.into(),
        display_name: String::new(),
        email: String::new(),
        description: String::new(),
        state: ServiceUserState::Active,
        creator: "su_creator".into(),
        revision: 1,
        create_time: now(),
        update_time: now(),
        last_active_time: None,
    }
}

fn key(id: &str, user_id: &str, org: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        service_user_id: user_id.into(),
        organization_id: org.into(),
        name: id.into(),
        description: String::new(),
        secret_hash: vec![1; 32],
        token_lifetime: Duration::seconds(3600),
        allowed_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        scopes: vec![Role::Viewer, Role::Admin],
        project_scopes: vec![tokenmint_store::ProjectRole {
            project_id: "prj_1".into(),
            role: Role::Admin,
        }],
        creator: "su_creator".into(),
        create_time: now(),
        expire_time: now() + Duration::days(1),
        last_used_time: None,
        last_used_address: None,
        revoke_time: None,
        revoke_reason: None,
        previous_secret: None,
        rotate_time: None,
    }
}

fn organization(id: &str) -> Organization {
    Organization {
        id: id.into(),
        name: id.into(),
        display_name: String::new(),
        max_service_users: 10,
        max_api_keys_per_service_user: 10,
        create_time: now(),
        update_time: now(),
        revision: 1,
    }
}

async fn with_org(f: &Fixture, id: &str) {
    let tx = f.store.begin().await.unwrap();
    tx.insert_organization(organization(id)).await.unwrap();
    tx.commit().await.unwrap();
}

async fn with_user(f: &Fixture, user: ServiceUser) -> Result<(), StoreError> {
    let tx = f.store.begin().await?;
    tx.insert_service_user(user).await?;
    tx.commit().await
}

/// Organization `org_a`, its user `su_1` and that user's key `ak_1`.
async fn with_user_and_key(f: &Fixture) {
    with_org(f, "org_a").await;
    with_user(f, user("su_1", "org_a", "bot")).await.unwrap();
    let tx = f.store.begin().await.unwrap();
    tx.insert_api_key(key("ak_1", "su_1", "org_a"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Runs `statements` on the fixture's SQLite file through a connection of its own, as damage
/// or a hand edit the store did not make.
async fn behind_the_stores_back(f: &Fixture, statements: &[&str]) {
    use sea_orm::{ConnectionTrait, Database};
    let url = format!("sqlite://{}?mode=rw", f._dir.path().join("t.db").display());
    let raw = Database::connect(url).await.unwrap();
    for statement in statements {
        raw.execute_unprepared(statement).await.unwrap();
    }
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
    with_user(&f, user("su_1", "org_a", "bot")).await.unwrap();
    with_user(&f, user("su_2", "org_b", "bot")).await.unwrap();
    let duplicate = with_user(&f, user("su_3", "org_a", "bot")).await;
    assert!(matches!(duplicate, Err(StoreError::AlreadyExists)));
}

#[tokio::test]
async fn organization_names_are_unique() {
    let f = store().await;
    with_org(&f, "org_a").await;
    let mut again = f.store.organization("org_a").await.unwrap();
    again.id = "org_z".into();
    let tx = f.store.begin().await.unwrap();
    assert!(matches!(
        tx.insert_organization(again).await,
        Err(StoreError::AlreadyExists)
    ));
}

#[tokio::test]
async fn reads_are_scoped_to_the_organization() {
    let f = store().await;
    with_org(&f, "org_a").await;
    with_user(&f, user("su_1", "org_a", "bot")).await.unwrap();
    assert!(f.store.service_user("org_a", "su_1").await.is_ok());
    assert!(matches!(
        f.store.service_user("org_b", "su_1").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn a_unit_of_work_dropped_without_commit_writes_nothing() {
    let f = store().await;
    with_org(&f, "org_a").await;
    {
        let tx = f.store.begin().await.unwrap();
        tx.insert_service_user(user("su_1", "org_a", "bot"))
            .await
            .unwrap();
        tx.insert_api_key(key("ak_1", "su_1", "org_a"))
            .await
            .unwrap();
    }
    assert!(matches!(
        f.store.service_user("org_a", "su_1").await,
        Err(StoreError::NotFound)
    ));
    assert!(f.store.find_key_principal("ak_1").await.unwrap().is_none());
}

#[tokio::test]
async fn typed_key_fields_round_trip() {
    let f = store().await;
    with_org(&f, "org_a").await;
    with_user(&f, user("su_1", "org_a", "bot")).await.unwrap();
    let written = key("ak_1", "su_1", "org_a");
    let tx = f.store.begin().await.unwrap();
    tx.insert_api_key(written.clone()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(f.store.api_key("org_a", "ak_1").await.unwrap(), written);
}

#[tokio::test]
async fn a_corrupt_scope_list_fails_closed_on_every_read() {
    let f = store().await;
    with_user_and_key(&f).await;
    behind_the_stores_back(
        &f,
        &["UPDATE api_keys SET scopes = '[\"viewer\",\"root\"]'"],
    )
    .await;
    assert!(matches!(
        f.store.api_key("org_a", "ak_1").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        f.store.list_api_keys("org_a", "su_1", None, 10, None).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        f.store.find_key_principal("ak_1").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        f.store.find_exchange_key("ak_1").await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn a_token_lifetime_out_of_range_fails_closed() {
    let f = store().await;
    with_user_and_key(&f).await;
    for lifetime in [i64::MAX, -100, 0] {
        let update = format!("UPDATE api_keys SET token_lifetime_seconds = {lifetime}");
        behind_the_stores_back(&f, &[&update]).await;
        assert!(
            matches!(
                f.store.find_key_principal("ak_1").await,
                Err(StoreError::Corrupt(_))
            ),
            "{lifetime}"
        );
        assert!(
            matches!(
                f.store.find_exchange_key("ak_1").await,
                Err(StoreError::Corrupt(_))
            ),
            "{lifetime}"
        );
    }
}

#[tokio::test]
async fn an_update_from_a_stale_revision_is_refused() {
    let f = store().await;
    with_org(&f, "org_a").await;
    with_user(&f, user("su_1", "org_a", "bot")).await.unwrap();
    let mut changed = user("su_1", "org_a", "bot");
    changed.display_name = "New".into();
    changed.revision = 2;
    let tx = f.store.begin().await.unwrap();
    tx.update_service_user(&changed, 1).await.unwrap();
    tx.commit().await.unwrap();
    let stored = f.store.service_user("org_a", "su_1").await.unwrap().user;
    assert_eq!((stored.revision, stored.display_name.as_str()), (2, "New"));
    let tx = f.store.begin().await.unwrap();
    assert!(matches!(
        tx.update_service_user(&changed, 1).await,
        Err(StoreError::Stale)
    ));
}

#[tokio::test]
async fn listing_after_an_id_continues_where_the_last_page_ended() {
    let f = store().await;
    with_org(&f, "org_a").await;
    for i in 0..5 {
        with_user(&f, user(&format!("su_{i}"), "org_a", &format!("u{i}")))
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
        let store = Store::connect(&StoreOptions::new(sibling_database(&base, &name)))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        stores.push((Fixture { store, _dir: dir }, Some(name)));
    }
    stores
}

/// The URL of database `name` on the server of the URL `base`.
fn sibling_database(base: &str, name: &str) -> String {
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    format!("{prefix}/{name}")
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
        with_user_and_key(&f).await;
        let binding = |id: &str, role: Role| RoleBinding {
            id: id.into(),
            organization_id: "org_a".into(),
            principal_id: "su_1".into(),
            scope: RoleScope::Organization("org_a".into()),
            role,
            create_time: now(),
        };
        let tx = f.store.begin().await.unwrap();
        for b in [binding("rb_1", Role::Owner), binding("rb_2", Role::Viewer)] {
            tx.add_role_binding(b).await.unwrap();
        }
        tx.commit().await.unwrap();

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
        let roles: Vec<Role> = found.role_bindings.iter().map(|b| b.role).collect();
        assert_eq!(roles, [Role::Owner, Role::Viewer]);
        assert_eq!(after_known - before, 1, "a known key is one statement");
        assert_eq!(
            after_unknown - after_known,
            1,
            "an unknown key is one statement too"
        );
        drop_database(database).await;
    }
}

#[tokio::test]
async fn the_exchange_lookup_reads_what_the_whole_rows_hold_in_one_statement() {
    for (f, database) in every_backend().await {
        with_org(&f, "org_a").await;
        let mut disabled = user("su_1", "org_a", "bot");
        disabled.state = ServiceUserState::Disabled;
        with_user(&f, disabled).await.unwrap();
        let mut written = key("ak_1", "su_1", "org_a");
        written.previous_secret = Some(tokenmint_store::PreviousSecret {
            hash: vec![2; 32],
            expire_time: now() + Duration::minutes(5),
        });
        written.revoke_time = Some(now());
        let binding = |id: &str, scope: RoleScope, role: Role| RoleBinding {
            id: id.into(),
            organization_id: "org_a".into(),
            principal_id: "su_1".into(),
            scope,
            role,
            create_time: now(),
        };
        let tx = f.store.begin().await.unwrap();
        tx.insert_api_key(written.clone()).await.unwrap();
        for b in [
            binding("rb_1", RoleScope::Organization("org_a".into()), Role::Admin),
            binding("rb_2", RoleScope::Project("prj_1".into()), Role::Viewer),
            binding("rb_3", RoleScope::Platform, Role::Superuser),
        ] {
            tx.add_role_binding(b).await.unwrap();
        }
        tx.commit().await.unwrap();

        let before = f.store.statements_executed();
        let found = f.store.find_exchange_key("ak_1").await.unwrap().unwrap();
        assert_eq!(f.store.statements_executed() - before, 1);
        let whole = f.store.find_key_principal("ak_1").await.unwrap().unwrap();

        assert_eq!(found.id, written.id);
        assert_eq!(found.service_user_id, "su_1");
        assert_eq!(found.organization_id, "org_a");
        assert_eq!(found.secret_hash, written.secret_hash);
        assert_eq!(found.previous_secret, written.previous_secret);
        assert_eq!(found.token_lifetime, written.token_lifetime);
        assert_eq!(found.allowed_cidrs, written.allowed_cidrs);
        assert_eq!(found.scopes, written.scopes);
        assert_eq!(found.project_scopes, written.project_scopes);
        assert_eq!(found.expire_time, written.expire_time);
        assert_eq!(found.revoke_time, written.revoke_time);
        assert_eq!(found.user_state, ServiceUserState::Disabled);
        let mut bindings = found.role_bindings.clone();
        bindings.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(bindings, whole.role_bindings);
        drop_database(database).await;
    }
}

#[tokio::test]
async fn the_exchange_lookup_of_a_user_without_roles_or_of_an_unknown_key() {
    for (f, database) in every_backend().await {
        with_user_and_key(&f).await;
        let found = f.store.find_exchange_key("ak_1").await.unwrap().unwrap();
        assert!(found.role_bindings.is_empty());
        assert_eq!(found.previous_secret, None);
        assert_eq!(found.revoke_time, None);
        assert_eq!(found.user_state, ServiceUserState::Active);
        assert!(
            f.store
                .find_exchange_key("ak_none")
                .await
                .unwrap()
                .is_none()
        );
        drop_database(database).await;
    }
}

/// Organization `org_a` with `n` users `su_{i}`, each holding key `ak_{i}` and `i % 4` role
/// bindings `rb_{i}_{j}`; every tenth user also holds a second key, `ak_{i}_b`.
async fn with_keys(f: &Fixture, n: usize) {
    with_org(f, "org_a").await;
    let tx = f.store.begin().await.unwrap();
    for i in 0..n {
        let user_id = format!("su_{i}");
        tx.insert_service_user(user(&user_id, "org_a", &format!("bot{i}")))
            .await
            .unwrap();
        tx.insert_api_key(key(&format!("ak_{i}"), &user_id, "org_a"))
            .await
            .unwrap();
        if i % 10 == 0 {
            tx.insert_api_key(key(&format!("ak_{i}_b"), &user_id, "org_a"))
                .await
                .unwrap();
        }
        for (j, role) in [Role::Viewer, Role::Admin, Role::Owner]
            .into_iter()
            .take(i % 4)
            .enumerate()
        {
            tx.add_role_binding(RoleBinding {
                id: format!("rb_{i}_{j}"),
                organization_id: "org_a".into(),
                principal_id: user_id.clone(),
                scope: RoleScope::Organization("org_a".into()),
                role,
                create_time: now(),
            })
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

/// The IDs [`with_keys`] wrote for `n` users (a user's two keys side by side, so they share a
/// statement), with an unknown one and a repeated one in the middle.
fn key_ids(n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(format!("ak_{i}"));
        if i % 10 == 0 {
            ids.push(format!("ak_{i}_b"));
        }
    }
    ids.insert(n / 2, "ak_none".into());
    ids.insert(n / 2, format!("ak_{}", n / 2 + 1));
    ids
}

/// Starts `find_exchange_key` for each ID at once; the answers in the same order.
async fn find_exchange_keys_at_once(
    store: &Store,
    ids: &[String],
) -> Vec<Result<Option<tokenmint_store::ExchangeKey>, StoreError>> {
    let reads: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.find_exchange_key(&id).await })
        })
        .collect();
    let mut answers = Vec::new();
    for read in reads {
        answers.push(read.await.unwrap());
    }
    answers
}

/// Each answer is the key asked for, with its own user's bindings; the unknown ID has none.
fn assert_each_key_is_its_own(
    ids: &[String],
    answers: Vec<Result<Option<tokenmint_store::ExchangeKey>, StoreError>>,
) {
    for (id, answer) in ids.iter().zip(answers) {
        let found = answer.unwrap();
        if id == "ak_none" {
            assert!(found.is_none());
            continue;
        }
        let found = found.unwrap();
        let i: usize = id[3..].trim_end_matches("_b").parse().unwrap();
        let user = format!("su_{i}");
        assert_eq!((&found.id, &found.service_user_id), (id, &user));
        let mut bindings: Vec<_> = found
            .role_bindings
            .iter()
            .map(|b| (b.id.clone(), b.principal_id.clone()))
            .collect();
        bindings.sort();
        let expected: Vec<_> = (0..i % 4)
            .map(|j| (format!("rb_{i}_{j}"), user.clone()))
            .collect();
        assert_eq!(bindings, expected, "{id}");
    }
}

#[tokio::test]
async fn concurrent_exchange_key_reads_share_statements_and_each_gets_its_own_key() {
    for (f, database) in every_backend().await {
        with_keys(&f, 200).await;
        let ids = key_ids(200);
        let before = (f.store.key_read_stats(), f.store.statements_executed());

        let answers = find_exchange_keys_at_once(&f.store, &ids).await;

        assert_each_key_is_its_own(&ids, answers);
        let stats = f.store.key_read_stats();
        assert_eq!(stats.keys - before.0.keys, ids.len() as u64);
        let statements = stats.reads - before.0.reads;
        assert!(
            statements <= 20,
            "{statements} statements for {} keys",
            ids.len()
        );
        assert_eq!(f.store.statements_executed() - before.1, statements);
        drop_database(database).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_many_threads_all_get_answered() {
    for (f, database) in every_backend().await {
        with_keys(&f, 300).await;
        let ids = key_ids(300);
        for _ in 0..5 {
            let answers = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                find_exchange_keys_at_once(&f.store, &ids),
            )
            .await
            .expect("every read is answered");
            assert_each_key_is_its_own(&ids, answers);
        }
        drop_database(database).await;
    }
}

#[tokio::test]
async fn a_corrupt_key_read_with_others_fails_alone() {
    let f = store().await;
    with_keys(&f, 200).await;
    behind_the_stores_back(
        &f,
        &[
            "UPDATE api_keys SET scopes = '[\"root\"]' WHERE id = 'ak_100'",
            // The second of su_30's bindings, which both of su_30's keys read.
            "UPDATE role_bindings SET role = 'root' WHERE id = 'rb_30_1'",
        ],
    )
    .await;
    let ids = key_ids(200);
    let corrupt = ["ak_100", "ak_30", "ak_30_b"];
    let (before, statements) = (f.store.key_read_stats(), f.store.statements_executed());

    let answers = find_exchange_keys_at_once(&f.store, &ids).await;

    for (id, answer) in ids.iter().zip(answers) {
        if corrupt.contains(&id.as_str()) {
            assert!(
                matches!(answer, Err(StoreError::Corrupt(_))),
                "{id}: {answer:?}"
            );
        } else if id != "ak_none" {
            assert_eq!(&answer.unwrap().unwrap().id, id);
        }
    }
    // Nobody had to read again: the corrupt key shared a statement and failed in it alone.
    let shared = f.store.key_read_stats().reads - before.reads;
    assert!(shared < 20, "{shared}");
    assert_eq!(f.store.statements_executed() - statements, shared);
}

#[tokio::test]
async fn a_failed_shared_read_reaches_every_caller_without_a_read_each() {
    let f = store().await;
    with_keys(&f, 200).await;
    behind_the_stores_back(&f, &["DROP TABLE role_bindings"]).await;
    let ids: Vec<String> = (0..200).map(|i| format!("ak_{i}")).collect();
    let (before, statements) = (f.store.key_read_stats(), f.store.statements_executed());

    let answers = find_exchange_keys_at_once(&f.store, &ids).await;

    for answer in answers {
        assert!(matches!(answer, Err(StoreError::Database(_))), "{answer:?}");
    }
    let shared = f.store.key_read_stats().reads - before.reads;
    assert!(shared < 20, "{shared}");
    assert_eq!(f.store.statements_executed() - statements, shared);
}

#[tokio::test]
async fn a_bulk_load_leaves_postgresql_planning_with_the_new_row_count() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    for (f, database) in every_backend().await {
        with_org(&f, "org_a").await;
        let users: Vec<_> = (0..3_000)
            .map(|n| user(&format!("su_{n:05}"), "org_a", &format!("bot-{n}")))
            .collect();
        let tx = f.store.begin().await.unwrap();
        tx.insert_service_users(users).await.unwrap();
        tx.commit().await.unwrap();

        f.store.analyze_after_bulk_load().await.unwrap();

        let Some(name) = &database else {
            // SQLite: nothing to refresh, and nothing refused.
            continue;
        };
        let base = std::env::var("TOKENMINT_TEST_DATABASE_URL").unwrap();
        let raw = Database::connect(sibling_database(&base, name))
            .await
            .unwrap();
        let row = raw
            .query_one_raw(Statement::from_string(
                raw.get_database_backend(),
                "SELECT reltuples::float8 AS rows FROM pg_class \
                 WHERE oid = 'service_users'::regclass",
            ))
            .await
            .unwrap()
            .unwrap();
        let rows: f64 = row.try_get("", "rows").unwrap();
        assert!(rows >= 3_000.0, "the planner believes {rows} rows");
        raw.close().await.unwrap();
        drop(f);
        drop_database(database).await;
    }
}
