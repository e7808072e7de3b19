//! The queries: reads on the pool ([`Store`]), and a unit of work ([`Tx`]) whose reads and writes
//! commit together or not at all. The domain decides; these only fetch and persist.

use crate::entity::{
    api_key, audit_anchor, audit_event, organization, project, role_binding, service_user,
    service_user_administrator, signing_key,
};
use crate::model;
use crate::model::{
    ApiKey, ApiKeyState, AuditEvent, AuditQuery, ExchangeKey, Invalidation, KeyNotice,
    KeyPrincipal, Organization, PreviousSecret, Project, RoleBinding, RoleScope, ServiceUser,
    ServiceUserRecord, ServiceUserState, SigningKey,
};
use crate::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult,
    IdenStatic, IntoActiveModel, Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, TransactionTrait,
};
use std::collections::HashMap;

/// Everything the first start writes, in one transaction.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// The `default` organization.
    pub organization: Organization,
    /// The `admin` service user.
    pub user: ServiceUser,
    /// Its role bindings (`owner`, `superuser`).
    pub role_bindings: Vec<RoleBinding>,
    /// Its first API key.
    pub api_key: ApiKey,
    /// The first event of the organization's audit chain.
    pub audit_event: AuditEvent,
}

/// Rows per multi-row INSERT: about 20 columns each stays under SQLite's 32,766 bound
/// parameters and PostgreSQL's 65,535.
const BULK_ROWS: usize = 500;

/// A unit of work: reads and writes on one transaction, committed by [`Tx::commit`] and rolled
/// back if dropped. On SQLite it holds the single writer's turn for its whole life.
pub struct Tx {
    txn: DatabaseTransaction,
    backend: DbBackend,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Audit chains this unit appended to, announced once it commits.
    appended: std::sync::Mutex<Vec<String>>,
    audit_appended: tokio::sync::broadcast::Sender<String>,
}

impl Store {
    /// Starts a unit of work.
    pub async fn begin(&self) -> StoreResult<Tx> {
        let writer = self.write_guard().await;
        let txn = if writer.is_some() {
            // SQLite: take the write lock at BEGIN (waiting out the busy timeout), not at the
            // first write. A deferred unit that read first could otherwise find the lock still
            // held by a unit that failed a moment ago and whose rollback is not through yet, and
            // fail with "database is locked" instead of waiting.
            self.db
                .begin_with_options(sea_orm::TransactionOptions {
                    isolation_level: None,
                    access_mode: None,
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                })
                .await?
        } else {
            self.db.begin().await?
        };
        Ok(Tx {
            txn,
            backend: self.db.get_database_backend(),
            _writer: writer,
            appended: std::sync::Mutex::default(),
            audit_appended: self.audit_appended.clone(),
        })
    }

    /// Writes the bootstrap organization, user, roles and key, unless a service user exists.
    pub async fn bootstrap(&self, bootstrap: Bootstrap) -> StoreResult<()> {
        let tx = self.begin().await?;
        if service_user::Entity::find().count(&tx.txn).await? > 0 {
            return Err(StoreError::AlreadyExists);
        }
        tx.insert_organization(bootstrap.organization).await?;
        let user = tx.insert_service_user(bootstrap.user).await?.user;
        tx.add_administrator(&user.id, &user.creator, user.create_time)
            .await?;
        for binding in bootstrap.role_bindings {
            tx.add_role_binding(binding).await?;
        }
        tx.insert_api_key(bootstrap.api_key).await?;
        tx.insert_audit_event(bootstrap.audit_event).await?;
        tx.commit().await
    }

    /// Whether any service user exists.
    pub async fn has_service_users(&self) -> StoreResult<bool> {
        Ok(service_user::Entity::find().count(&self.db).await? > 0)
    }

    pub async fn organization(&self, id: &str) -> StoreResult<Organization> {
        find_organization(&self.db, id).await
    }

    /// A service user of an organization, with its administrators.
    pub async fn service_user(
        &self,
        organization_id: &str,
        id: &str,
    ) -> StoreResult<ServiceUserRecord> {
        find_user_record(&self.db, organization_id, id).await
    }

    /// The organization a service user belongs to.
    pub async fn organization_of_service_user(&self, id: &str) -> StoreResult<String> {
        organization_of_user(&self.db, id).await
    }

    /// The organization an API key belongs to.
    pub async fn organization_of_api_key(&self, id: &str) -> StoreResult<String> {
        api_key::Entity::find_by_id(id)
            .select_only()
            .column(api_key::Column::OrganizationId)
            .into_tuple::<String>()
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The organization a role binding belongs to.
    pub async fn organization_of_role_binding(&self, id: &str) -> StoreResult<String> {
        role_binding::Entity::find_by_id(id)
            .select_only()
            .column(role_binding::Column::OrganizationId)
            .into_tuple::<String>()
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// A project of an organization.
    pub async fn project(&self, organization_id: &str, id: &str) -> StoreResult<Project> {
        find_project(&self.db, organization_id, id).await
    }

    /// The organization a project belongs to.
    pub async fn organization_of_project(&self, id: &str) -> StoreResult<String> {
        project::Entity::find_by_id(id)
            .select_only()
            .column(project::Column::OrganizationId)
            .into_tuple::<String>()
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Projects of an organization in ID order, after `after_id`, at most `limit`.
    pub async fn list_projects(
        &self,
        organization_id: &str,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<Project>> {
        let mut query = project::Entity::find()
            .filter(project::Column::OrganizationId.eq(organization_id))
            .order_by_asc(project::Column::Id)
            .limit(limit);
        if let Some(after_id) = after_id {
            query = query.filter(project::Column::Id.gt(after_id));
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(Project::from)
            .collect())
    }

    /// Organizations in ID order, after `after_id`, at most `limit`.
    pub async fn list_organizations(
        &self,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<Organization>> {
        let mut query = organization::Entity::find()
            .order_by_asc(organization::Column::Id)
            .limit(limit);
        if let Some(after_id) = after_id {
            query = query.filter(organization::Column::Id.gt(after_id));
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(Organization::from)
            .collect())
    }

    /// Users of an organization in ID order, after `after_id`, at most `limit`.
    pub async fn list_service_users(
        &self,
        organization_id: &str,
        state: Option<ServiceUserState>,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<ServiceUserRecord>> {
        let mut query = service_user::Entity::find()
            .filter(service_user::Column::OrganizationId.eq(organization_id))
            .order_by_asc(service_user::Column::Id)
            .limit(limit);
        if let Some(state) = state {
            query = query.filter(service_user::Column::State.eq(state.as_str()));
        }
        if let Some(after_id) = after_id {
            query = query.filter(service_user::Column::Id.gt(after_id));
        }
        let users = query.all(&self.db).await?;
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let admins = service_user_administrator::Entity::find()
            .filter(service_user_administrator::Column::ServiceUserId.is_in(ids))
            .order_by_asc(service_user_administrator::Column::PrincipalId)
            .all(&self.db)
            .await?;
        users
            .into_iter()
            .map(|user| {
                let administrators = admins
                    .iter()
                    .filter(|a| a.service_user_id == user.id)
                    .map(|a| a.principal_id.clone())
                    .collect();
                Ok(ServiceUserRecord {
                    user: user.try_into()?,
                    administrators,
                })
            })
            .collect()
    }

    /// A key of an organization.
    pub async fn api_key(&self, organization_id: &str, id: &str) -> StoreResult<ApiKey> {
        find_api_key(&self.db, organization_id, id).await
    }

    /// A user's keys in ID order, after `after_id`, at most `limit`.
    pub async fn list_api_keys(
        &self,
        organization_id: &str,
        service_user_id: &str,
        after_id: Option<&str>,
        limit: u64,
        state_at: Option<(ApiKeyState, DateTime<Utc>)>,
    ) -> StoreResult<Vec<ApiKey>> {
        find_user(&self.db, organization_id, service_user_id).await?;
        let mut query = api_key::Entity::find()
            .filter(api_key::Column::ServiceUserId.eq(service_user_id))
            .order_by_asc(api_key::Column::Id)
            .limit(limit);
        query = match state_at {
            None => query,
            Some((ApiKeyState::Revoked, _)) => {
                query.filter(api_key::Column::RevokeTime.is_not_null())
            }
            Some((ApiKeyState::Active, now)) => query
                .filter(api_key::Column::RevokeTime.is_null())
                .filter(api_key::Column::ExpireTime.gt(now)),
            Some((ApiKeyState::Expired, now)) => query
                .filter(api_key::Column::RevokeTime.is_null())
                .filter(api_key::Column::ExpireTime.lte(now)),
        };
        if let Some(after_id) = after_id {
            query = query.filter(api_key::Column::Id.gt(after_id));
        }
        query
            .all(&self.db)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect()
    }

    /// The key, its user and the user's role bindings, or `None` when the key does not exist.
    /// One joined statement whether or not the key exists, so a probe for an unknown key ID
    /// costs the database what a probe for a known one does.
    pub async fn find_key_principal(&self, key_id: &str) -> StoreResult<Option<KeyPrincipal>> {
        find_key_principal(&self.db, key_id).await
    }

    /// The role bindings of a principal, in every scope.
    pub async fn role_bindings_of(&self, principal_id: &str) -> StoreResult<Vec<RoleBinding>> {
        role_bindings_of(&self.db, principal_id).await
    }

    /// Role bindings of an organization in ID order, optionally of one principal and of one
    /// scope, after `after_id`, at most `limit`.
    pub async fn list_role_bindings(
        &self,
        organization_id: &str,
        principal_id: Option<&str>,
        scope: Option<&crate::RoleScope>,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<RoleBinding>> {
        // The platform `superuser` is not a role binding of the organization.
        let mut query = role_binding::Entity::find()
            .filter(role_binding::Column::OrganizationId.eq(organization_id))
            .filter(role_binding::Column::Scope.ne(crate::RoleScope::Platform.to_stored()))
            .order_by_asc(role_binding::Column::Id)
            .limit(limit);
        if let Some(principal_id) = principal_id {
            query = query.filter(role_binding::Column::PrincipalId.eq(principal_id));
        }
        if let Some(scope) = scope {
            query = query.filter(role_binding::Column::Scope.eq(scope.to_stored()));
        }
        if let Some(after_id) = after_id {
            query = query.filter(role_binding::Column::Id.gt(after_id));
        }
        query
            .all(&self.db)
            .await?
            .into_iter()
            .map(RoleBinding::try_from)
            .collect()
    }

    /// The service users `principal_id` administers, in ID order.
    pub async fn administered_by(&self, principal_id: &str) -> StoreResult<Vec<String>> {
        Ok(service_user_administrator::Entity::find()
            .select_only()
            .column(service_user_administrator::Column::ServiceUserId)
            .filter(service_user_administrator::Column::PrincipalId.eq(principal_id))
            .order_by_asc(service_user_administrator::Column::ServiceUserId)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    /// Every signing key, oldest first.
    pub async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        signing_keys(&self.db).await
    }
}

impl Store {
    /// Audit events matching `query`, newest first, at most `limit`.
    pub async fn list_audit_events(
        &self,
        query: &AuditQuery,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        use audit_event::Column as C;
        let mut select = audit_event::Entity::find()
            .filter(C::OrganizationId.eq(query.organization_id.as_str()))
            .order_by_desc(C::Id)
            .limit(limit);
        for (column, value) in [
            (C::Action, &query.action),
            (C::ActorId, &query.actor_id),
            (C::TargetId, &query.target_id),
            (C::Outcome, &query.outcome),
        ] {
            if let Some(value) = value {
                select = select.filter(column.eq(value.as_str()));
            }
        }
        if let Some(from) = query.time_from {
            select = select.filter(C::Time.gte(from));
        }
        if let Some(to) = query.time_to {
            select = select.filter(C::Time.lt(to));
        }
        if let Some(before) = &query.before_id {
            select = select.filter(C::Id.lt(before.as_str()));
        }
        select
            .all(&self.db)
            .await?
            .into_iter()
            .map(AuditEvent::try_from)
            .collect()
    }

    /// Events of one chain after `after_id` (from the start when `None`), oldest first.
    pub async fn audit_chain(
        &self,
        organization_id: &str,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut select = audit_event::Entity::find()
            .filter(audit_event::Column::OrganizationId.eq(organization_id))
            .order_by_asc(audit_event::Column::Id)
            .limit(limit);
        if let Some(after) = after_id {
            select = select.filter(audit_event::Column::Id.gt(after));
        }
        select
            .all(&self.db)
            .await?
            .into_iter()
            .map(AuditEvent::try_from)
            .collect()
    }

    /// Unrevoked keys due a `notice` at `now` (expiring before `horizon`, or expired) that have
    /// not had it, at most `limit`.
    pub async fn keys_due_notice(
        &self,
        notice: KeyNotice,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<ApiKey>> {
        use api_key::Column as C;
        let select = api_key::Entity::find().filter(C::RevokeTime.is_null());
        let select = match notice {
            KeyNotice::Expiring => select
                .filter(C::ExpiryWarnedTime.is_null())
                .filter(C::ExpireTime.gt(now))
                .filter(C::ExpireTime.lte(horizon)),
            KeyNotice::Expired => select
                .filter(C::ExpiredNoticeTime.is_null())
                .filter(C::ExpireTime.lte(now)),
        };
        select
            .order_by_asc(C::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect()
    }

    /// Active keys not exchanged (or, never exchanged, not created) since `cutoff`.
    pub async fn keys_unused_since(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<ApiKey>> {
        use api_key::Column as C;
        api_key::Entity::find()
            .filter(C::RevokeTime.is_null())
            .filter(C::ExpireTime.gt(now))
            .filter(
                sea_orm::Condition::any()
                    .add(C::LastUsedTime.lt(cutoff))
                    .add(
                        sea_orm::Condition::all()
                            .add(C::LastUsedTime.is_null())
                            .add(C::CreateTime.lt(cutoff)),
                    ),
            )
            .order_by_asc(C::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect()
    }

    /// Removes the events of `chain` up to its newest one written before `cutoff`, so what
    /// remains is a whole suffix of the chain, and records the last removed event as the
    /// chain's anchor; returns how many were removed.
    pub async fn prune_audit_chain(&self, chain: &str, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        use audit_event::Column as C;
        let tx = self.begin().await?;
        tx.lock_audit_chain(chain).await?;
        let newest_old = audit_event::Entity::find()
            .filter(C::OrganizationId.eq(chain))
            .filter(C::Time.lt(cutoff))
            .order_by_desc(C::Id)
            .one(&tx.txn)
            .await?;
        let Some(last) = newest_old else {
            return Ok(0);
        };
        let removed = audit_event::Entity::delete_many()
            .filter(C::OrganizationId.eq(chain))
            .filter(C::Id.lte(last.id.as_str()))
            .exec(&tx.txn)
            .await?;
        audit_anchor::Entity::delete_by_id(chain)
            .exec(&tx.txn)
            .await?;
        audit_anchor::Entity::insert(
            audit_anchor::Model {
                organization_id: chain.to_owned(),
                event_id: last.id,
                hash: last.hash,
            }
            .into_active_model(),
        )
        .exec_without_returning(&tx.txn)
        .await?;
        tx.commit().await?;
        Ok(removed.rows_affected)
    }

    /// Where retention cut `chain`: the ID and hash of the last event it removed.
    pub async fn audit_anchor(&self, chain: &str) -> StoreResult<Option<(String, String)>> {
        audit_anchor_of(&self.db, chain).await
    }

    /// Every chain that has events: the organizations' IDs, and `""` for the platform's.
    pub async fn audit_chains(&self) -> StoreResult<Vec<String>> {
        Ok(audit_event::Entity::find()
            .select_only()
            .column(audit_event::Column::OrganizationId)
            .distinct()
            .order_by_asc(audit_event::Column::OrganizationId)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }
}

impl Tx {
    /// Makes every write of this unit visible at once.
    pub async fn commit(self) -> StoreResult<()> {
        self.txn.commit().await?;
        let appended =
            std::mem::take(&mut *self.appended.lock().unwrap_or_else(|p| p.into_inner()));
        for chain in appended {
            let _ = self.audit_appended.send(chain);
        }
        Ok(())
    }

    /// Locks the rows of these service users until the unit ends (in ID order, so two units
    /// locking the same users cannot deadlock). Another unit that locks or changes one of them
    /// waits, so authority read after this is current until commit. SQLite needs nothing: its
    /// units already run one at a time.
    pub async fn lock_service_users(&self, ids: &[&str]) -> StoreResult<()> {
        if self.backend != DbBackend::Postgres || ids.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<&str> = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        service_user::Entity::find()
            .select_only()
            .column(service_user::Column::Id)
            .filter(service_user::Column::Id.is_in(ids))
            .order_by_asc(service_user::Column::Id)
            .lock_exclusive()
            .into_tuple::<String>()
            .all(&self.txn)
            .await?;
        Ok(())
    }

    pub async fn organization(&self, id: &str) -> StoreResult<Organization> {
        find_organization(&self.txn, id).await
    }

    /// Writes an organization's mutable fields, if its stored revision is still `read_revision`.
    pub async fn update_organization(
        &self,
        organization: &Organization,
        read_revision: i64,
    ) -> StoreResult<()> {
        let row = organization::Model::from(organization.clone());
        let updated = organization::Entity::update_many()
            .col_expr(
                organization::Column::DisplayName,
                Expr::value(row.display_name),
            )
            .col_expr(
                organization::Column::MaxServiceUsers,
                Expr::value(row.max_service_users),
            )
            .col_expr(
                organization::Column::MaxKeysPerUser,
                Expr::value(row.max_keys_per_user),
            )
            .col_expr(organization::Column::Revision, Expr::value(row.revision))
            .col_expr(
                organization::Column::UpdateTime,
                Expr::value(row.update_time),
            )
            .filter(organization::Column::Id.eq(row.id))
            .filter(organization::Column::Revision.eq(read_revision))
            .exec(&self.txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::Stale);
        }
        Ok(())
    }

    /// A project of an organization.
    pub async fn project(&self, organization_id: &str, id: &str) -> StoreResult<Project> {
        find_project(&self.txn, organization_id, id).await
    }

    /// Inserts a project.
    pub async fn insert_project(&self, project: Project) -> StoreResult<()> {
        project::Entity::insert(project::Model::from(project).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// Deletes a project and every role binding on it; returns the principals that lost one.
    pub async fn delete_project(&self, id: &str) -> StoreResult<Vec<String>> {
        let scope = RoleScope::Project(id.to_owned()).to_stored();
        let principals: Vec<String> = role_binding::Entity::find()
            .select_only()
            .column(role_binding::Column::PrincipalId)
            .filter(role_binding::Column::Scope.eq(scope.clone()))
            .into_tuple::<String>()
            .all(&self.txn)
            .await?;
        role_binding::Entity::delete_many()
            .filter(role_binding::Column::Scope.eq(scope))
            .exec(&self.txn)
            .await?;
        project::Entity::delete_by_id(id).exec(&self.txn).await?;
        Ok(principals)
    }

    /// How many role bindings apply to a project.
    pub async fn count_project_bindings(&self, id: &str) -> StoreResult<u64> {
        Ok(role_binding::Entity::find()
            .filter(role_binding::Column::Scope.eq(RoleScope::Project(id.to_owned()).to_stored()))
            .count(&self.txn)
            .await?)
    }

    /// Inserts an organization.
    pub async fn insert_organization(&self, organization: Organization) -> StoreResult<()> {
        organization::Entity::insert(organization::Model::from(organization).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// The organization a service user belongs to, read inside this unit (a unit never reads
    /// through the pool: with every connection held by a waiting unit, it would wait forever).
    pub async fn organization_of_service_user(&self, id: &str) -> StoreResult<String> {
        organization_of_user(&self.txn, id).await
    }

    /// The key, its user and the user's role bindings, read inside this unit.
    pub async fn key_principal(&self, key_id: &str) -> StoreResult<Option<KeyPrincipal>> {
        find_key_principal(&self.txn, key_id).await
    }

    /// The role bindings of a principal, in every scope.
    pub async fn role_bindings_of(&self, principal_id: &str) -> StoreResult<Vec<RoleBinding>> {
        role_bindings_of(&self.txn, principal_id).await
    }

    /// Grants a role binding.
    pub async fn add_role_binding(&self, binding: RoleBinding) -> StoreResult<()> {
        role_binding::Entity::insert(role_binding::Model::from(binding).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// A service user of an organization, with its administrators.
    pub async fn service_user(
        &self,
        organization_id: &str,
        id: &str,
    ) -> StoreResult<ServiceUserRecord> {
        find_user_record(&self.txn, organization_id, id).await
    }

    /// Inserts a service user (with no administrators; add them with `add_administrator`).
    pub async fn insert_service_user(&self, user: ServiceUser) -> StoreResult<ServiceUserRecord> {
        service_user::Entity::insert(service_user::Model::from(user.clone()).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(ServiceUserRecord {
            administrators: Vec::new(),
            user,
        })
    }

    /// Removes `principal_id` from the administrators of `service_user_id`; `NotFound` if it
    /// was not one.
    pub async fn remove_administrator(
        &self,
        service_user_id: &str,
        principal_id: &str,
    ) -> StoreResult<()> {
        let deleted = service_user_administrator::Entity::delete_many()
            .filter(service_user_administrator::Column::ServiceUserId.eq(service_user_id))
            .filter(service_user_administrator::Column::PrincipalId.eq(principal_id))
            .exec(&self.txn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// How many service users an organization has.
    pub async fn count_service_users(&self, organization_id: &str) -> StoreResult<u64> {
        Ok(service_user::Entity::find()
            .filter(service_user::Column::OrganizationId.eq(organization_id))
            .count(&self.txn)
            .await?)
    }

    /// Locks an organization's row until the unit ends, so changes that must see every other
    /// change to the organization (the last owner) run one at a time.
    pub async fn lock_organization(&self, id: &str) -> StoreResult<()> {
        if self.backend != DbBackend::Postgres {
            return Ok(());
        }
        organization::Entity::find_by_id(id)
            .select_only()
            .column(organization::Column::Id)
            .lock_exclusive()
            .into_tuple::<String>()
            .one(&self.txn)
            .await?;
        Ok(())
    }

    /// A role binding of an organization.
    pub async fn role_binding(&self, organization_id: &str, id: &str) -> StoreResult<RoleBinding> {
        role_binding::Entity::find_by_id(id)
            .filter(role_binding::Column::OrganizationId.eq(organization_id))
            .one(&self.txn)
            .await?
            .ok_or(StoreError::NotFound)?
            .try_into()
    }

    /// Deletes a role binding.
    pub async fn delete_role_binding(&self, id: &str) -> StoreResult<()> {
        role_binding::Entity::delete_by_id(id)
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// The active service users holding `owner` over the whole organization.
    pub async fn active_owners(&self, organization_id: &str) -> StoreResult<Vec<String>> {
        let owners: Vec<String> = role_binding::Entity::find()
            .select_only()
            .column(role_binding::Column::PrincipalId)
            .filter(role_binding::Column::OrganizationId.eq(organization_id))
            .filter(role_binding::Column::Scope.eq(organization_id))
            .filter(role_binding::Column::Role.eq(crate::Role::Owner.as_str()))
            .into_tuple::<String>()
            .all(&self.txn)
            .await?;
        let active: Vec<String> = service_user::Entity::find()
            .select_only()
            .column(service_user::Column::Id)
            .filter(service_user::Column::Id.is_in(owners))
            .filter(service_user::Column::State.eq(ServiceUserState::Active.as_str()))
            .into_tuple::<String>()
            .all(&self.txn)
            .await?;
        Ok(active)
    }

    /// Makes `principal_id` an administrator of `service_user_id`.
    pub async fn add_administrator(
        &self,
        service_user_id: &str,
        principal_id: &str,
        time: DateTime<Utc>,
    ) -> StoreResult<()> {
        let row = service_user_administrator::Model {
            service_user_id: service_user_id.to_owned(),
            principal_id: principal_id.to_owned(),
            create_time: time,
        };
        service_user_administrator::Entity::insert(row.into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// Writes `user`'s mutable fields, if its stored revision is still `read_revision`.
    pub async fn update_service_user(
        &self,
        user: &ServiceUser,
        read_revision: i64,
    ) -> StoreResult<()> {
        let row = service_user::Model::from(user.clone());
        let updated = service_user::Entity::update_many()
            .col_expr(
                service_user::Column::DisplayName,
                Expr::value(row.display_name),
            )
            .col_expr(service_user::Column::Email, Expr::value(row.email))
            .col_expr(
                service_user::Column::Description,
                Expr::value(row.description),
            )
            .col_expr(service_user::Column::State, Expr::value(row.state))
            .col_expr(service_user::Column::Revision, Expr::value(row.revision))
            .col_expr(
                service_user::Column::UpdateTime,
                Expr::value(row.update_time),
            )
            .filter(service_user::Column::Id.eq(row.id))
            .filter(service_user::Column::Revision.eq(read_revision))
            .exec(&self.txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::Stale);
        }
        Ok(())
    }

    /// Deletes a service user (its administrators and role bindings with it).
    pub async fn delete_service_user(&self, id: &str) -> StoreResult<()> {
        service_user_administrator::Entity::delete_many()
            .filter(service_user_administrator::Column::ServiceUserId.eq(id))
            .exec(&self.txn)
            .await?;
        role_binding::Entity::delete_many()
            .filter(role_binding::Column::PrincipalId.eq(id))
            .exec(&self.txn)
            .await?;
        service_user::Entity::delete_by_id(id)
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// A key of an organization.
    pub async fn api_key(&self, organization_id: &str, id: &str) -> StoreResult<ApiKey> {
        find_api_key(&self.txn, organization_id, id).await
    }

    /// Every key of a service user.
    pub async fn api_keys_of(&self, service_user_id: &str) -> StoreResult<Vec<ApiKey>> {
        api_key::Entity::find()
            .filter(api_key::Column::ServiceUserId.eq(service_user_id))
            .order_by_asc(api_key::Column::Id)
            .all(&self.txn)
            .await?
            .into_iter()
            .map(ApiKey::try_from)
            .collect()
    }

    /// Inserts an API key.
    pub async fn insert_api_key(&self, key: ApiKey) -> StoreResult<()> {
        api_key::Entity::insert(api_key::Model::from(key).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// Writes many users at once, in multi-row statements (a benchmark fixture's bulk path).
    pub async fn insert_service_users(&self, users: Vec<ServiceUser>) -> StoreResult<()> {
        for chunk in users.chunks(BULK_ROWS) {
            let rows = chunk
                .iter()
                .map(|u| service_user::Model::from(u.clone()).into_active_model());
            service_user::Entity::insert_many(rows)
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }

    /// Writes many keys at once, in multi-row statements (a benchmark fixture's bulk path).
    pub async fn insert_api_keys(&self, keys: Vec<ApiKey>) -> StoreResult<()> {
        for chunk in keys.chunks(BULK_ROWS) {
            let rows = chunk
                .iter()
                .map(|k| api_key::Model::from(k.clone()).into_active_model());
            api_key::Entity::insert_many(rows)
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }

    /// Gives a key a new secret hash, keeping the old one as `previous` (or none).
    pub async fn rotate_api_key(
        &self,
        id: &str,
        secret_hash: Vec<u8>,
        previous: Option<PreviousSecret>,
        time: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (previous_hash, previous_expire) = match previous {
            Some(p) => (Some(p.hash), Some(p.expire_time)),
            None => (None, None),
        };
        api_key::Entity::update_many()
            .col_expr(api_key::Column::SecretHash, Expr::value(secret_hash))
            .col_expr(
                api_key::Column::PreviousSecretHash,
                Expr::value(previous_hash),
            )
            .col_expr(
                api_key::Column::PreviousSecretExpireTime,
                Expr::value(previous_expire),
            )
            .col_expr(api_key::Column::RotateTime, Expr::value(time))
            .filter(api_key::Column::Id.eq(id))
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// Locks the signing keys until the unit ends, so two replicas deciding at once that a new
    /// key is due add one between them. SQLite's units already run one at a time.
    pub async fn lock_signing_keys(&self) -> StoreResult<()> {
        if self.backend == DbBackend::Postgres {
            self.txn
                .execute_unprepared("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
                .await?;
        }
        Ok(())
    }

    /// Every signing key, oldest first.
    pub async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        signing_keys(&self.txn).await
    }

    /// Stores a new signing key.
    pub async fn insert_signing_key(&self, key: SigningKey) -> StoreResult<()> {
        signing_key::Entity::insert(signing_key::Model::from(key).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// Serialises appends to one audit chain until the unit ends (SQLite's units already run one
    /// at a time).
    pub async fn lock_audit_chain(&self, organization_id: &str) -> StoreResult<()> {
        if self.backend == DbBackend::Postgres {
            self.txn
                .execute_raw(sea_orm::Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    [format!("tokenmint.audit:{organization_id}").into()],
                ))
                .await?;
        }
        Ok(())
    }

    /// Where retention cut `chain`, read inside this unit.
    pub async fn audit_anchor(&self, chain: &str) -> StoreResult<Option<(String, String)>> {
        audit_anchor_of(&self.txn, chain).await
    }

    /// The newest event of a chain, read inside this unit.
    pub async fn last_audit_event(&self, organization_id: &str) -> StoreResult<Option<AuditEvent>> {
        audit_event::Entity::find()
            .filter(audit_event::Column::OrganizationId.eq(organization_id))
            .order_by_desc(audit_event::Column::Id)
            .one(&self.txn)
            .await?
            .map(AuditEvent::try_from)
            .transpose()
    }

    /// Appends an event; its chain is announced when the unit commits (on PostgreSQL to every
    /// replica, through NOTIFY, which the database delivers only on commit).
    pub async fn insert_audit_event(&self, event: AuditEvent) -> StoreResult<()> {
        let chain = event.organization_id.clone();
        audit_event::Entity::insert(audit_event::Model::from(event).into_active_model())
            .exec_without_returning(&self.txn)
            .await?;
        if self.backend == DbBackend::Postgres {
            self.txn
                .execute_raw(crate::notify(crate::AUDIT_CHANNEL, &chain))
                .await?;
        } else {
            self.appended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(chain);
        }
        Ok(())
    }

    /// Announces, with this unit's commit and only then, that `stale` must be dropped from
    /// every replica's key cache. On PostgreSQL this is a NOTIFY in the unit's own transaction,
    /// so a rolled-back change announces nothing and a committed one cannot fail to. On SQLite
    /// there are no other replicas.
    pub async fn announce_invalidation(&self, stale: &Invalidation) -> StoreResult<()> {
        if self.backend == DbBackend::Postgres {
            self.txn
                .execute_raw(crate::notify(
                    crate::INVALIDATION_CHANNEL,
                    &stale.to_payload(),
                ))
                .await?;
        }
        Ok(())
    }

    /// Records that a key was last exchanged at `time` from `address`, unless a later use is
    /// stored already (another replica may flush after this one).
    pub async fn record_key_use(
        &self,
        key_id: &str,
        time: DateTime<Utc>,
        address: Option<&str>,
    ) -> StoreResult<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedTime, Expr::value(time))
            .col_expr(
                api_key::Column::LastUsedAddress,
                Expr::value(address.map(str::to_owned)),
            )
            .filter(api_key::Column::Id.eq(key_id))
            .filter(
                sea_orm::Condition::any()
                    .add(api_key::Column::LastUsedTime.is_null())
                    .add(api_key::Column::LastUsedTime.lt(time)),
            )
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// Records that a service user was last active at `time`, unless a later time is stored.
    pub async fn record_service_user_activity(
        &self,
        service_user_id: &str,
        time: DateTime<Utc>,
    ) -> StoreResult<()> {
        service_user::Entity::update_many()
            .col_expr(service_user::Column::LastActiveTime, Expr::value(time))
            .filter(service_user::Column::Id.eq(service_user_id))
            .filter(
                sea_orm::Condition::any()
                    .add(service_user::Column::LastActiveTime.is_null())
                    .add(service_user::Column::LastActiveTime.lt(time)),
            )
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// Marks `notice` sent for a key at `time`, unless it was already (by another replica):
    /// `true` when this unit is the one that sends it.
    pub async fn mark_key_notice(
        &self,
        key_id: &str,
        notice: KeyNotice,
        time: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let column = match notice {
            KeyNotice::Expiring => api_key::Column::ExpiryWarnedTime,
            KeyNotice::Expired => api_key::Column::ExpiredNoticeTime,
        };
        let updated = api_key::Entity::update_many()
            .col_expr(column, Expr::value(time))
            .filter(api_key::Column::Id.eq(key_id))
            .filter(column.is_null())
            .exec(&self.txn)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Moves a signing key's activation to `time`.
    pub async fn activate_signing_key(&self, kid: &str, time: DateTime<Utc>) -> StoreResult<()> {
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::ActivateTime, Expr::value(time))
            .filter(signing_key::Column::Kid.eq(kid))
            .exec(&self.txn)
            .await?;
        Ok(())
    }

    /// Marks a key revoked at `time` for `reason`.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        reason: &str,
        time: DateTime<Utc>,
    ) -> StoreResult<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokeTime, Expr::value(time))
            .col_expr(api_key::Column::RevokeReason, Expr::value(reason))
            .filter(api_key::Column::Id.eq(id))
            .exec(&self.txn)
            .await?;
        Ok(())
    }
}

async fn audit_anchor_of(
    db: &impl ConnectionTrait,
    chain: &str,
) -> StoreResult<Option<(String, String)>> {
    Ok(audit_anchor::Entity::find_by_id(chain)
        .one(db)
        .await?
        .map(|a| (a.event_id, a.hash)))
}

async fn signing_keys(db: &impl ConnectionTrait) -> StoreResult<Vec<SigningKey>> {
    Ok(signing_key::Entity::find()
        .order_by_asc(signing_key::Column::CreateTime)
        .order_by_asc(signing_key::Column::Kid)
        .all(db)
        .await?
        .into_iter()
        .map(SigningKey::from)
        .collect())
}

async fn find_organization(db: &impl ConnectionTrait, id: &str) -> StoreResult<Organization> {
    organization::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Organization::from)
        .ok_or(StoreError::NotFound)
}

async fn find_project(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: &str,
) -> StoreResult<Project> {
    project::Entity::find_by_id(id)
        .filter(project::Column::OrganizationId.eq(organization_id))
        .one(db)
        .await?
        .map(Project::from)
        .ok_or(StoreError::NotFound)
}

async fn organization_of_user(db: &impl ConnectionTrait, id: &str) -> StoreResult<String> {
    service_user::Entity::find_by_id(id)
        .select_only()
        .column(service_user::Column::OrganizationId)
        .into_tuple::<String>()
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

async fn find_user(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: &str,
) -> StoreResult<ServiceUser> {
    service_user::Entity::find_by_id(id)
        .filter(service_user::Column::OrganizationId.eq(organization_id))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
}

async fn find_user_record(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: &str,
) -> StoreResult<ServiceUserRecord> {
    let user = find_user(db, organization_id, id).await?;
    let administrators = service_user_administrator::Entity::find()
        .filter(service_user_administrator::Column::ServiceUserId.eq(user.id.clone()))
        .order_by_asc(service_user_administrator::Column::PrincipalId)
        .all(db)
        .await?
        .into_iter()
        .map(|a| a.principal_id)
        .collect();
    Ok(ServiceUserRecord {
        user,
        administrators,
    })
}

async fn find_api_key(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: &str,
) -> StoreResult<ApiKey> {
    api_key::Entity::find_by_id(id)
        .filter(api_key::Column::OrganizationId.eq(organization_id))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
}

async fn role_bindings_of(
    db: &impl ConnectionTrait,
    principal_id: &str,
) -> StoreResult<Vec<RoleBinding>> {
    role_binding::Entity::find()
        .filter(role_binding::Column::PrincipalId.eq(principal_id))
        .order_by_asc(role_binding::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(RoleBinding::try_from)
        .collect()
}

async fn find_key_principal(
    db: &impl ConnectionTrait,
    key_id: &str,
) -> StoreResult<Option<KeyPrincipal>> {
    let mut select = Query::select();
    for column in api_key::Column::iter() {
        select.expr_as(
            Expr::col((api_key::Entity, column)),
            Alias::new(format!("k_{}", column.as_str())),
        );
    }
    for column in service_user::Column::iter() {
        select.expr_as(
            Expr::col((service_user::Entity, column)),
            Alias::new(format!("u_{}", column.as_str())),
        );
    }
    for column in role_binding::Column::iter() {
        select.expr_as(
            Expr::col((role_binding::Entity, column)),
            Alias::new(format!("r_{}", column.as_str())),
        );
    }
    select
        .from(api_key::Entity)
        .inner_join(
            service_user::Entity,
            Expr::col((service_user::Entity, service_user::Column::Id))
                .equals((api_key::Entity, api_key::Column::ServiceUserId)),
        )
        .left_join(
            role_binding::Entity,
            Expr::col((role_binding::Entity, role_binding::Column::PrincipalId))
                .equals((service_user::Entity, service_user::Column::Id)),
        )
        .and_where(Expr::col((api_key::Entity, api_key::Column::Id)).eq(key_id))
        .order_by((role_binding::Entity, role_binding::Column::Id), Order::Asc);
    let statement = db.get_database_backend().build(&select);
    let rows = db.query_all_raw(statement).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let api_key = api_key::Model::from_query_result(first, "k_")?.try_into()?;
    let user = service_user::Model::from_query_result(first, "u_")?.try_into()?;
    let mut role_bindings = Vec::new();
    for row in &rows {
        if let Some(binding) = role_binding::Model::from_query_result_optional(row, "r_")? {
            role_bindings.push(binding.try_into()?);
        }
    }
    Ok(Some(KeyPrincipal {
        api_key,
        user,
        role_bindings,
    }))
}

/// The statement of [`find_exchange_keys`] for `n` keys, decoded by position: each key's
/// columns, its user's, then one role binding per row (NULL when the user holds none). Callers
/// pad the key list to a power of two, so each pooled connection prepares at most seven texts
/// (one to sixty-four keys), once each.
fn exchange_keys_sql(backend: DbBackend, n: usize) -> String {
    let parameters: Vec<String> = (1..=n)
        .map(|i| match backend {
            DbBackend::Postgres => format!("${i}"),
            _ => "?".to_owned(),
        })
        .collect();
    format!(
        "SELECT k.id, k.service_user_id, u.organization_id, k.secret_hash, \
         k.previous_secret_hash, k.previous_secret_expire_time, k.token_lifetime_seconds, \
         k.allowed_cidrs, k.scopes, k.expire_time, k.revoke_time, u.state, \
         r.id, r.organization_id, r.principal_id, r.scope, r.role, r.create_time \
         FROM api_keys k JOIN service_users u ON u.id = k.service_user_id \
         LEFT JOIN role_bindings r ON r.principal_id = u.id WHERE k.id IN ({})",
        parameters.join(", ")
    )
}

/// The exchange view of each of `key_ids` that exists, by key ID. A key whose stored values
/// cannot be read maps to its own error, so it does not fail the keys read with it.
pub(crate) async fn find_exchange_keys(
    db: &impl ConnectionTrait,
    key_ids: &[&str],
) -> StoreResult<HashMap<String, StoreResult<ExchangeKey>>> {
    let mut found = HashMap::with_capacity(key_ids.len());
    let Some(last) = key_ids.last() else {
        return Ok(found);
    };
    let backend = db.get_database_backend();
    let padded = key_ids.len().next_power_of_two();
    let values = key_ids
        .iter()
        .chain(std::iter::repeat_n(last, padded - key_ids.len()))
        .map(|id| sea_orm::Value::from(*id));
    let statement =
        Statement::from_sql_and_values(backend, exchange_keys_sql(backend, padded), values);
    for row in db.query_all_raw(statement).await? {
        let id: String = row.try_get_by_index(0)?;
        // The first row of a key brings its columns; every row may bring one binding.
        let key = found
            .entry(id)
            .or_insert_with_key(|id| exchange_key_columns(id, &row));
        if let Ok(readable) = key {
            match exchange_key_binding(&row) {
                Ok(binding) => readable.role_bindings.extend(binding),
                Err(error) => *key = Err(error),
            }
        }
    }
    Ok(found)
}

/// The role binding of one row of [`exchange_keys_sql`], if the row holds one.
fn exchange_key_binding(row: &sea_orm::QueryResult) -> StoreResult<Option<RoleBinding>> {
    let Some(id) = row.try_get_by_index::<Option<String>>(12)? else {
        return Ok(None);
    };
    Ok(Some(RoleBinding {
        id,
        organization_id: row.try_get_by_index(13)?,
        principal_id: row.try_get_by_index(14)?,
        scope: RoleScope::from_stored(&row.try_get_by_index::<String>(15)?)?,
        role: model::parse_role(&row.try_get_by_index::<String>(16)?)?,
        create_time: row.try_get_by_index(17)?,
    }))
}

/// The key's and its user's columns of one row of [`exchange_keys_sql`]; no role bindings yet.
fn exchange_key_columns(id: &str, row: &sea_orm::QueryResult) -> StoreResult<ExchangeKey> {
    let (scopes, project_scopes) = model::parse_scopes(id, &row.try_get_by_index::<String>(8)?)?;
    Ok(ExchangeKey {
        id: id.to_owned(),
        service_user_id: row.try_get_by_index(1)?,
        organization_id: row.try_get_by_index(2)?,
        secret_hash: row.try_get_by_index(3)?,
        previous_secret: model::previous_secret(row.try_get_by_index(4)?, row.try_get_by_index(5)?),
        token_lifetime: model::token_lifetime(id, row.try_get_by_index(6)?)?,
        allowed_cidrs: model::parse_cidrs(id, &row.try_get_by_index::<String>(7)?)?,
        scopes,
        project_scopes,
        expire_time: row.try_get_by_index(9)?,
        revoke_time: row.try_get_by_index(10)?,
        user_state: ServiceUserState::from_stored(&row.try_get_by_index::<String>(11)?)?,
        role_bindings: Vec::new(),
    })
}
