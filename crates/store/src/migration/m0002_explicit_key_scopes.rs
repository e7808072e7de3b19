//! Keys created without scopes used to mean "whatever roles the user holds at exchange time",
//! which let a later grant widen an existing key. Every key now stores its roles explicitly:
//! this turns each such key into the roles its user holds at the time of the migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
use std::collections::BTreeMap;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Scopes,
}

/// Role names lowest first, as keys store them.
const ROLE_ORDER: [&str; 4] = ["viewer", "admin", "owner", "superuser"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT k.id AS id, b.role AS role FROM api_keys k \
                 LEFT JOIN role_bindings b ON b.principal_id = k.service_user_id \
                 WHERE k.scopes = '[]'",
            ))
            .await?;
        let mut keys: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for row in &rows {
            let id: String = row.try_get("", "id")?;
            let role: Option<String> = row.try_get("", "role")?;
            let roles = keys.entry(id).or_default();
            if let Some(known) = role.and_then(|r| ROLE_ORDER.into_iter().find(|k| *k == r)) {
                roles.push(known);
            }
        }
        for (id, mut roles) in keys {
            if roles.is_empty() {
                continue;
            }
            roles.sort_by_key(|r| ROLE_ORDER.iter().position(|k| k == r));
            roles.dedup();
            let scopes = serde_json::to_string(&roles)
                .map_err(|e| DbErr::Migration(format!("scopes of {id}: {e}")))?;
            manager
                .exec_stmt(
                    Query::update()
                        .table(ApiKeys::Table)
                        .value(ApiKeys::Scopes, scopes)
                        .and_where(Expr::col(ApiKeys::Id).eq(id))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Explicit scopes are a valid state for the old code too; nothing to undo.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Migrator;
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

    const OLD_ROWS: &str = "
        INSERT INTO organizations VALUES ('org_a','a','',10,10,'2026-01-01 00:00:00+00:00','2026-01-01 00:00:00+00:00');
        INSERT INTO service_users VALUES ('su_boss','org_a','boss','','','','ACTIVE','su_boss',1,'2026-01-01 00:00:00+00:00','2026-01-01 00:00:00+00:00');
        INSERT INTO service_users VALUES ('su_bot','org_a','bot','','','','ACTIVE','su_boss',1,'2026-01-01 00:00:00+00:00','2026-01-01 00:00:00+00:00');
        INSERT INTO role_bindings VALUES ('rb_1','org_a','su_boss','platform','superuser','2026-01-01 00:00:00+00:00');
        INSERT INTO role_bindings VALUES ('rb_2','org_a','su_boss','org_a','owner','2026-01-01 00:00:00+00:00');";

    fn key_row(id: &str, user: &str, scopes: &str, hash: &str) -> String {
        format!(
            "INSERT INTO api_keys (id, service_user_id, organization_id, name, description, \
             secret_hash, token_lifetime_seconds, allowed_cidrs, scopes, creator, create_time, \
             expire_time) VALUES ('{id}','{user}','org_a','{id}','',{hash},3600,'[]','{scopes}',\
             'su_boss','2026-01-01 00:00:00+00:00','2027-01-01 00:00:00+00:00')"
        )
    }

    async fn scopes_of(db: &DatabaseConnection, id: &str) -> String {
        let row = db
            .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT scopes FROM api_keys WHERE id = '{id}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "scopes").unwrap()
    }

    async fn check(db: DatabaseConnection, hash_literal: &str) {
        Migrator::up(&db, Some(1)).await.unwrap();
        for statement in OLD_ROWS.split(';').filter(|s| !s.trim().is_empty()) {
            db.execute_unprepared(statement).await.unwrap();
        }
        for (id, user, scopes) in [
            ("ak_boss", "su_boss", "[]"),
            ("ak_bot", "su_bot", "[]"),
            ("ak_narrow", "su_boss", "[\"viewer\"]"),
        ] {
            db.execute_unprepared(&key_row(id, user, scopes, hash_literal))
                .await
                .unwrap();
        }
        Migrator::up(&db, None).await.unwrap();
        assert_eq!(
            scopes_of(&db, "ak_boss").await,
            "[\"owner\",\"superuser\"]",
            "an unscoped key keeps exactly the roles its user holds now"
        );
        assert_eq!(scopes_of(&db, "ak_bot").await, "[]", "a user without roles");
        assert_eq!(
            scopes_of(&db, "ak_narrow").await,
            "[\"viewer\"]",
            "explicit scopes are left alone"
        );
    }

    #[tokio::test]
    async fn unscoped_keys_become_their_users_current_roles_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        check(Database::connect(url).await.unwrap(), "x'00'").await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(tokenmint_postgres_tests),
        ignore = "needs TOKENMINT_TEST_DATABASE_URL"
    )]
    async fn unscoped_keys_become_their_users_current_roles_on_postgres() {
        let Ok(base) = std::env::var("TOKENMINT_TEST_DATABASE_URL") else {
            eprintln!("NOTE: PostgreSQL migration test SKIPPED: TOKENMINT_TEST_DATABASE_URL unset");
            return;
        };
        let name = format!("tm_migration_{}", std::process::id());
        let admin = Database::connect(&base).await.unwrap();
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let prefix = base.rsplit_once('/').map_or(base.as_str(), |(p, _)| p);
        let db = Database::connect(format!("{prefix}/{name}")).await.unwrap();
        check(db.clone(), "'\\x00'::bytea").await;
        db.close().await.ok();
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
