//! The queries and units of work the server runs; each public method is one transaction or one
//! statement.

use crate::entity::{
    api_key, organization, role_binding, service_user, service_user_administrator, signing_key,
};
use crate::{STATE_ACTIVE, Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic,
    IntoActiveModel, Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

/// A service user together with its administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUserRecord {
    /// The stored user.
    pub user: service_user::Model,
    /// Principal IDs allowed to manage it, sorted.
    pub administrators: Vec<String>,
}

/// New values for the mutable fields of a service user; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct ServiceUserChanges {
    /// New display name.
    pub display_name: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// Everything the first start writes, in one transaction.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// The `default` organization.
    pub organization: organization::Model,
    /// The `admin` service user.
    pub user: service_user::Model,
    /// Its role bindings (`owner`, `superuser`).
    pub role_bindings: Vec<role_binding::Model>,
    /// Its first API key.
    pub api_key: api_key::Model,
}

/// What the exchange and authentication paths need to know about one key, read in one go.
#[derive(Clone, Debug)]
pub struct KeyPrincipal {
    /// The key.
    pub api_key: api_key::Model,
    /// The key's service user.
    pub user: service_user::Model,
    /// The user's role bindings.
    pub role_bindings: Vec<role_binding::Model>,
}

impl Store {
    /// Writes the bootstrap organization, user, roles and key, unless a service user exists.
    pub async fn bootstrap(&self, bootstrap: Bootstrap) -> StoreResult<()> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        if service_user::Entity::find().count(&txn).await? > 0 {
            return Err(StoreError::AlreadyExists);
        }
        organization::Entity::insert(bootstrap.organization.into_active_model())
            .exec_without_returning(&txn)
            .await?;
        insert_user_with_administrator(&txn, bootstrap.user).await?;
        for binding in bootstrap.role_bindings {
            role_binding::Entity::insert(binding.into_active_model())
                .exec_without_returning(&txn)
                .await?;
        }
        api_key::Entity::insert(bootstrap.api_key.into_active_model())
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Whether any service user exists.
    pub async fn has_service_users(&self) -> StoreResult<bool> {
        Ok(service_user::Entity::find().count(&self.db).await? > 0)
    }

    /// Inserts an organization.
    pub async fn create_organization(&self, organization: organization::Model) -> StoreResult<()> {
        let _writer = self.write_guard().await;
        organization::Entity::insert(organization.into_active_model())
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Gets an organization.
    pub async fn get_organization(&self, id: &str) -> StoreResult<organization::Model> {
        organization::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Inserts a service user and makes its creator an administrator of it.
    pub async fn create_service_user(
        &self,
        user: service_user::Model,
    ) -> StoreResult<ServiceUserRecord> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        organization::Entity::find_by_id(user.organization_id.clone())
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound)?;
        let record = insert_user_with_administrator(&txn, user).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Gets a service user of an organization.
    pub async fn get_service_user(
        &self,
        organization_id: &str,
        id: &str,
    ) -> StoreResult<ServiceUserRecord> {
        let user = find_user(&self.db, organization_id, id).await?;
        with_administrators(&self.db, user).await
    }

    /// Lists users of an organization in ID order, after `after_id`, at most `limit`.
    pub async fn list_service_users(
        &self,
        organization_id: &str,
        state: Option<&str>,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<ServiceUserRecord>> {
        let mut query = service_user::Entity::find()
            .filter(service_user::Column::OrganizationId.eq(organization_id))
            .order_by_asc(service_user::Column::Id)
            .limit(limit);
        if let Some(state) = state {
            query = query.filter(service_user::Column::State.eq(state));
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
        Ok(users
            .into_iter()
            .map(|user| {
                let administrators = admins
                    .iter()
                    .filter(|a| a.service_user_id == user.id)
                    .map(|a| a.principal_id.clone())
                    .collect();
                ServiceUserRecord {
                    user,
                    administrators,
                }
            })
            .collect())
    }

    /// Applies `changes` if the stored revision still equals `expected_revision` (when given).
    pub async fn update_service_user(
        &self,
        organization_id: &str,
        id: &str,
        expected_revision: Option<i64>,
        changes: ServiceUserChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<ServiceUserRecord> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        let user = find_user(&txn, organization_id, id).await?;
        if expected_revision.is_some_and(|expected| expected != user.revision) {
            return Err(StoreError::Stale);
        }
        let mut update = service_user::Entity::update_many()
            .col_expr(
                service_user::Column::Revision,
                Expr::value(user.revision + 1),
            )
            .col_expr(service_user::Column::UpdateTime, Expr::value(now))
            .filter(service_user::Column::Id.eq(id))
            .filter(service_user::Column::Revision.eq(user.revision));
        if let Some(v) = changes.display_name {
            update = update.col_expr(service_user::Column::DisplayName, Expr::value(v));
        }
        if let Some(v) = changes.email {
            update = update.col_expr(service_user::Column::Email, Expr::value(v));
        }
        if let Some(v) = changes.description {
            update = update.col_expr(service_user::Column::Description, Expr::value(v));
        }
        if update.exec(&txn).await?.rows_affected == 0 {
            return Err(StoreError::Stale);
        }
        let user = find_user(&txn, organization_id, id).await?;
        let record = with_administrators(&txn, user).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Sets a user's state (`ACTIVE` or `DISABLED`); a no-op when it already has it.
    pub async fn set_service_user_state(
        &self,
        organization_id: &str,
        id: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ServiceUserRecord> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        let user = find_user(&txn, organization_id, id).await?;
        let user = if user.state == state {
            user
        } else {
            let revision = user.revision + 1;
            let mut active = user.into_active_model();
            active.state = Set(state.to_owned());
            active.revision = Set(revision);
            active.update_time = Set(now);
            active.update(&txn).await?
        };
        let record = with_administrators(&txn, user).await?;
        txn.commit().await?;
        Ok(record)
    }

    /// Deletes a user. With active keys it refuses, unless `force`, which revokes them first in
    /// the same transaction. Returns the IDs of every key the user had.
    pub async fn delete_service_user(
        &self,
        organization_id: &str,
        id: &str,
        force: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        find_user(&txn, organization_id, id).await?;
        let active_keys = api_key::Entity::find()
            .filter(api_key::Column::ServiceUserId.eq(id))
            .filter(api_key::Column::RevokeTime.is_null())
            .filter(api_key::Column::ExpireTime.gt(now))
            .count(&txn)
            .await?;
        if active_keys > 0 && !force {
            return Err(StoreError::HasActiveKeys(active_keys));
        }
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokeTime, Expr::value(now))
            .col_expr(
                api_key::Column::RevokeReason,
                Expr::value("service user deleted"),
            )
            .filter(api_key::Column::ServiceUserId.eq(id))
            .filter(api_key::Column::RevokeTime.is_null())
            .exec(&txn)
            .await?;
        let key_ids = api_key::Entity::find()
            .filter(api_key::Column::ServiceUserId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|k| k.id)
            .collect();
        service_user::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(key_ids)
    }

    /// Inserts an API key for an existing user of the key's organization.
    pub async fn create_api_key(&self, key: api_key::Model) -> StoreResult<()> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        find_user(&txn, &key.organization_id, &key.service_user_id).await?;
        api_key::Entity::insert(key.into_active_model())
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Gets a key of an organization.
    pub async fn get_api_key(
        &self,
        organization_id: &str,
        id: &str,
    ) -> StoreResult<api_key::Model> {
        api_key::Entity::find_by_id(id)
            .filter(api_key::Column::OrganizationId.eq(organization_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Lists a user's keys in ID order, after `after_id`, at most `limit`.
    pub async fn list_api_keys(
        &self,
        organization_id: &str,
        service_user_id: &str,
        after_id: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<api_key::Model>> {
        find_user(&self.db, organization_id, service_user_id).await?;
        let mut query = api_key::Entity::find()
            .filter(api_key::Column::ServiceUserId.eq(service_user_id))
            .order_by_asc(api_key::Column::Id)
            .limit(limit);
        if let Some(after_id) = after_id {
            query = query.filter(api_key::Column::Id.gt(after_id));
        }
        Ok(query.all(&self.db).await?)
    }

    /// Revokes a key; revoking a revoked key keeps its first revocation.
    pub async fn revoke_api_key(
        &self,
        organization_id: &str,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<api_key::Model> {
        let _writer = self.write_guard().await;
        let txn = self.db.begin().await?;
        let key = api_key::Entity::find_by_id(id)
            .filter(api_key::Column::OrganizationId.eq(organization_id))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound)?;
        let key = if key.revoke_time.is_some() {
            key
        } else {
            let mut active = key.into_active_model();
            active.revoke_time = Set(Some(now));
            active.revoke_reason = Set(Some(reason.to_owned()));
            active.update(&txn).await?
        };
        txn.commit().await?;
        Ok(key)
    }

    /// The key, its user and the user's role bindings, or `None` when the key does not exist.
    /// One joined statement whether or not the key exists, so a probe for an unknown key ID
    /// costs the database what a probe for a known one does.
    pub async fn find_key_principal(&self, key_id: &str) -> StoreResult<Option<KeyPrincipal>> {
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
            .order_by(
                (role_binding::Entity, role_binding::Column::Role),
                Order::Asc,
            );
        let statement = self.db.get_database_backend().build(&select);
        let rows = self.db.query_all_raw(statement).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let api_key = api_key::Model::from_query_result(first, "k_")?;
        let user = service_user::Model::from_query_result(first, "u_")?;
        let mut role_bindings = Vec::new();
        for row in &rows {
            if let Some(binding) = role_binding::Model::from_query_result_optional(row, "r_")? {
                role_bindings.push(binding);
            }
        }
        Ok(Some(KeyPrincipal {
            api_key,
            user,
            role_bindings,
        }))
    }

    /// Grants a role binding.
    pub async fn add_role_binding(&self, binding: role_binding::Model) -> StoreResult<()> {
        let _writer = self.write_guard().await;
        role_binding::Entity::insert(binding.into_active_model())
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// The names of the roles bound to a principal, in any scope.
    pub async fn role_names_of(&self, principal_id: &str) -> StoreResult<Vec<String>> {
        Ok(role_bindings_of(&self.db, principal_id)
            .await?
            .into_iter()
            .map(|b| b.role)
            .collect())
    }

    /// Every signing key, oldest first.
    pub async fn signing_keys(&self) -> StoreResult<Vec<signing_key::Model>> {
        Ok(signing_key::Entity::find()
            .order_by_asc(signing_key::Column::CreateTime)
            .all(&self.db)
            .await?)
    }

    /// Stores a new signing key.
    pub async fn insert_signing_key(&self, key: signing_key::Model) -> StoreResult<()> {
        let _writer = self.write_guard().await;
        signing_key::Entity::insert(key.into_active_model())
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }
}

async fn find_user(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: &str,
) -> StoreResult<service_user::Model> {
    service_user::Entity::find_by_id(id)
        .filter(service_user::Column::OrganizationId.eq(organization_id))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

async fn with_administrators(
    db: &impl ConnectionTrait,
    user: service_user::Model,
) -> StoreResult<ServiceUserRecord> {
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

async fn insert_user_with_administrator(
    db: &impl ConnectionTrait,
    user: service_user::Model,
) -> StoreResult<ServiceUserRecord> {
    debug_assert!(user.state == STATE_ACTIVE || user.state == crate::STATE_DISABLED);
    let administrator = service_user_administrator::Model {
        service_user_id: user.id.clone(),
        principal_id: user.creator.clone(),
        create_time: user.create_time,
    };
    service_user::Entity::insert(user.clone().into_active_model())
        .exec_without_returning(db)
        .await?;
    service_user_administrator::Entity::insert(administrator.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(ServiceUserRecord {
        administrators: vec![user.creator.clone()],
        user,
    })
}

async fn role_bindings_of(
    db: &impl ConnectionTrait,
    principal_id: &str,
) -> StoreResult<Vec<role_binding::Model>> {
    Ok(role_binding::Entity::find()
        .filter(role_binding::Column::PrincipalId.eq(principal_id))
        .order_by_asc(role_binding::Column::Role)
        .all(db)
        .await?)
}
