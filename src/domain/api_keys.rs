//! API keys: creation (the one time a secret is shown), reads and revocation.

use crate::domain::audit::{Actor, Origin, details};
use crate::domain::roles::{ResourceScope, TokenScope, roles_in};
use crate::domain::roles::{Role, narrow};
use crate::domain::validation::{self as check, Violations};
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Reason, Resource, Result};
use crate::ids::{ApiKeyId, OrganizationId, ProjectId, ServiceUserId};
use chrono::TimeDelta;
use ipnet::IpNet;
use std::time::Duration;
use tokenmint_store::{
    ApiKey, Invalidation, PreviousSecret, ProjectRole, RoleScope, ServiceUserState, StoreError, Tx,
};
use tokenmint_token::ApiSecret;

/// Shortest key validity.
pub const MIN_KEY_VALIDITY: Duration = Duration::from_secs(86_400);
/// Longest key validity.
pub const MAX_KEY_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// Shortest token lifetime a key may mint.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest token lifetime a key may mint.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
/// Longest grace period in which a rotated-out secret still exchanges.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(7 * 86_400);
/// Most CIDR blocks on one key.
pub const MAX_ALLOWED_CIDRS: usize = 64;
/// Most entries in a key's scope list (there are four roles).
pub const MAX_SCOPES: usize = 8;

/// What the caller asks for in CreateApiKey.
#[derive(Clone, Debug, Default)]
pub struct NewApiKey {
    /// Owner of the key.
    pub service_user_id: String,
    /// Unique among the user's keys.
    pub name: String,
    /// Free text.
    pub description: String,
    /// How long the key works; required.
    pub expires_in: Option<Duration>,
    /// Lifetime of the tokens it mints; `None` means the default.
    pub token_lifetime: Option<Duration>,
    /// Where it may be exchanged from.
    pub allowed_cidrs: Vec<String>,
    /// Roles its tokens may carry.
    pub scopes: Vec<String>,
}

/// A new key and its secret, which exists only in this value and the response built from it.
#[derive(Debug)]
pub struct CreatedApiKey {
    /// The stored key.
    pub api_key: ApiKey,
    pub secret: ApiSecret,
}

/// A key with its new secret, after a rotation.
#[derive(Debug)]
pub struct RotatedApiKey {
    /// The key, as stored after the rotation.
    pub api_key: ApiKey,
    /// The new secret, which exists only here and in the response built from it.
    pub secret: ApiSecret,
    /// Until when the previous secret still exchanges; `None` when it stopped at once.
    pub previous_secret_expire_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// One page of keys.
#[derive(Debug)]
pub struct ApiKeyPage {
    pub api_keys: Vec<ApiKey>,
    /// Token for the next page, empty on the last.
    pub next_page_token: String,
}

/// Where a key stands now.
pub use tokenmint_store::ApiKeyState as KeyState;

/// The state of a stored key at `now`.
pub fn key_state(key: &ApiKey, now: chrono::DateTime<chrono::Utc>) -> KeyState {
    if key.revoke_time.is_some() {
        KeyState::Revoked
    } else if key.expire_time <= now {
        KeyState::Expired
    } else {
        KeyState::Active
    }
}

fn duration_in(
    value: Option<Duration>,
    min: Duration,
    max: Duration,
) -> std::result::Result<Duration, String> {
    match value {
        None => Err("is required".into()),
        // Truncating would silently give the caller something it did not ask for.
        Some(d) if d.subsec_nanos() != 0 => Err("must be a whole number of seconds".into()),
        Some(d) if d < min || d > max => Err(format!(
            "must be between {} and {} seconds",
            min.as_secs(),
            max.as_secs()
        )),
        Some(d) => Ok(d),
    }
}

/// Parses and normalises one CIDR block (`10.1.2.3/8` becomes `10.0.0.0/8`); a bare address is
/// a /32 or /128. An IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) becomes the IPv4 block it
/// means, because peers are compared in their canonical form, where such addresses are IPv4.
pub fn parse_cidr(cidr: &str) -> Option<IpNet> {
    let net = cidr
        .parse::<IpNet>()
        .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
        .ok()?;
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
    {
        return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
            .ok()
            .map(|n| IpNet::V4(n.trunc()));
    }
    Some(net.trunc())
}

/// Parses a request's scopes, one role per entry (an organization role, or `prj_…:role`),
/// recording each bad entry. An empty entry is an error, not "no restriction".
fn parse_scopes(v: &mut Violations, scopes: &[String]) -> TokenScope {
    let mut parsed = TokenScope::default();
    if scopes.len() > MAX_SCOPES {
        v.add("scopes", format!("at most {MAX_SCOPES} entries"));
        return parsed;
    }
    for (i, scope) in scopes.iter().enumerate() {
        let entry = if scope.contains(':') {
            ProjectRole::parse(scope)
                .filter(|p| ProjectId::parse(&p.project_id).is_some())
                .map(|p| parsed.projects.push(p))
        } else {
            Role::parse(scope).map(|r| parsed.roles.push(r))
        };
        if entry.is_none() {
            v.add(
                &format!("scopes[{i}]"),
                format!(
                    "{} is not a role; roles: viewer, admin, owner, superuser, or prj_…:role",
                    check::echo(scope)
                ),
            );
        }
    }
    parsed.roles.sort();
    parsed.roles.dedup();
    parsed.projects.sort();
    parsed.projects.dedup();
    parsed
}

/// Parses a request's CIDR allowlist, recording each bad entry.
fn parse_cidrs(v: &mut Violations, cidrs: &[String]) -> Vec<IpNet> {
    let mut parsed = Vec::new();
    if cidrs.len() > MAX_ALLOWED_CIDRS {
        v.add(
            "allowed_cidrs",
            format!("at most {MAX_ALLOWED_CIDRS} entries"),
        );
        return parsed;
    }
    for (i, cidr) in cidrs.iter().enumerate() {
        match parse_cidr(cidr) {
            Some(net) => parsed.push(net),
            None => v.add(
                &format!("allowed_cidrs[{i}]"),
                format!("{} is not a CIDR block like 10.0.0.0/8", check::echo(cidr)),
            ),
        }
    }
    parsed
}

impl Tokenmint {
    /// Creates a key for a service user the caller manages.
    pub async fn create_api_key(
        &self,
        caller: &Principal,
        request: NewApiKey,
    ) -> Result<CreatedApiKey> {
        let mut v = Violations::new();
        let user_id = ServiceUserId::parse(&request.service_user_id);
        if user_id.is_none() {
            v.add("service_user_id", "must be an ID like su_…");
        }
        v.check("name", check::name(&request.name));
        v.check(
            "description",
            check::text(&request.description, check::MAX_DESCRIPTION_LEN),
        );
        let expires_in = duration_in(request.expires_in, MIN_KEY_VALIDITY, MAX_KEY_VALIDITY)
            .map_err(|d| v.add("expires_in", format!("{d} (1 to 365 days)")))
            .ok();
        let token_lifetime = duration_in(
            Some(
                request
                    .token_lifetime
                    .unwrap_or(self.settings.default_token_lifetime),
            ),
            MIN_TOKEN_LIFETIME,
            MAX_TOKEN_LIFETIME,
        )
        .map_err(|d| v.add("token_lifetime", d))
        .ok();
        let cidrs = parse_cidrs(&mut v, &request.allowed_cidrs);
        let requested_scopes = parse_scopes(&mut v, &request.scopes);
        v.finish()?;
        let (Some(user_id), Some(expires_in), Some(token_lifetime)) =
            (user_id, expires_in, token_lifetime)
        else {
            return Err(Error::Internal("validated fields missing".into()));
        };
        let tx = self.store.begin().await?;
        let (caller, user, user_roles) = self.managed_service_user(&tx, caller, &user_id).await?;
        if user.user.state != ServiceUserState::Active {
            return Err(Error::FailedPrecondition(
                Reason::ServiceUserDisabled,
                "the service user is disabled; enable it before giving it a key".into(),
            ));
        }
        let organization = user.user.organization_id.clone();
        let quota = tx
            .organization(&organization)
            .await?
            .max_api_keys_per_service_user;
        let now = self.now();
        let active = tx
            .api_keys_of(user_id.as_str())
            .await?
            .iter()
            .filter(|k| key_state(k, now) == KeyState::Active)
            .count();
        // The organization's row is locked (reauthorize), so concurrent creates count in turn.
        if active >= usize::try_from(quota).unwrap_or(0) {
            return Err(Error::ResourceExhausted(format!(
                "the organization's quota max_api_keys_per_service_user ({quota}) is reached for this service user"
            )));
        }
        let scope = ResourceScope::Organization(organization.clone());
        let user_bindings = tx.role_bindings_of(user_id.as_str()).await?;
        // The key's roles are fixed now, never resolved later: a grant to the user after this
        // call must not widen a key whose creator could not have granted it.
        let (scopes, project_scopes) = if requested_scopes.is_empty() {
            let projects = user_bindings
                .iter()
                .filter_map(|b| match &b.scope {
                    RoleScope::Project(project_id) => Some(ProjectRole {
                        project_id: project_id.clone(),
                        role: b.role,
                    }),
                    _ => None,
                })
                .filter(|p| {
                    let there = project_scope(&organization, &p.project_id);
                    !narrow(&caller.effective_roles_in(&there), &[p.role]).is_empty()
                })
                .collect();
            (
                narrow(&caller.effective_roles_in(&scope), &user_roles),
                projects,
            )
        } else {
            authz::grant_scopes(&caller, &scope, &requested_scopes.roles)?;
            // A key carries only roles its user holds now: a dormant scope would come alive
            // when the user is granted more, beyond what the grantor meant for this key.
            let held = narrow(&user_roles, &requested_scopes.roles);
            if let Some(role) = requested_scopes.roles.iter().find(|r| !held.contains(r)) {
                return Err(Error::invalid(
                    "scopes",
                    format!("the service user does not hold the {role} role"),
                ));
            }
            for wanted in &requested_scopes.projects {
                tx.project(&organization, &wanted.project_id)
                    .await
                    .map_err(|e| Error::from_store(e, Resource::Project, &wanted.project_id))?;
                let there = project_scope(&organization, &wanted.project_id);
                authz::grant_scopes(&caller, &there, &[wanted.role])?;
                if narrow(&roles_in(&user_bindings, &there), &[wanted.role]).is_empty() {
                    return Err(Error::invalid(
                        "scopes",
                        format!("the service user does not hold {wanted}"),
                    ));
                }
            }
            (requested_scopes.roles, requested_scopes.projects)
        };

        let secret = ApiSecret::generate(&self.rng)?;
        let key = ApiKey {
            id: ApiKeyId::generate().to_string(),
            service_user_id: user_id.to_string(),
            organization_id: organization,
            name: request.name,
            description: request.description,
            secret_hash: self.hasher.hash(&secret),
            token_lifetime: seconds(token_lifetime),
            allowed_cidrs: cidrs,
            scopes,
            project_scopes,
            creator: caller.service_user_id.to_string(),
            create_time: now,
            expire_time: now + seconds(expires_in),
            last_used_time: None,
            last_used_address: None,
            revoke_time: None,
            revoke_reason: None,
            previous_secret: None,
            rotate_time: None,
        };
        let name = key.name.clone();
        tx.insert_api_key(key.clone()).await.map_err(|e| match e {
            StoreError::AlreadyExists => Error::AlreadyExists(
                Reason::ApiKeyAlreadyExists,
                format!(
                    "the service user already has a key named {}",
                    check::echo(&name)
                ),
            ),
            other => other.into(),
        })?;
        self.audit_change(
            &tx,
            &key.organization_id,
            &caller,
            "CreateApiKey",
            &key.id,
            details([
                ("service_user_id", key.service_user_id.clone()),
                ("name", key.name.clone()),
                ("expire_time", key.expire_time.to_rfc3339()),
            ]),
        )
        .await?;
        // A probe may have cached this ID as unknown before it existed.
        self.commit_invalidating(tx, &[Invalidation::ApiKey(key.id.clone())])
            .await?;
        Ok(CreatedApiKey {
            api_key: key,
            secret,
        })
    }

    /// Gets a key of the caller's organization.
    pub async fn get_api_key(&self, caller: &Principal, id: &str) -> Result<ApiKey> {
        let id = check::id("id", id, ApiKeyId::parse, ApiKeyId::PREFIX)?;
        authz::read(caller, &caller.organization_scope())?;
        let organization = self.organization_of_key(caller, &id).await?;
        authz::read(
            caller,
            &ResourceScope::Organization(organization.to_string()),
        )?;
        self.store
            .api_key(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ApiKey, id.as_str()))
    }

    /// Lists a service user's keys.
    pub async fn list_api_keys(
        &self,
        caller: &Principal,
        service_user_id: &str,
        page_size: i32,
        page_token: &str,
        filter: &str,
    ) -> Result<ApiKeyPage> {
        let state = parse_key_state_filter(filter)?;
        let user_id = check::id(
            "service_user_id",
            service_user_id,
            ServiceUserId::parse,
            ServiceUserId::PREFIX,
        )?;
        let limit = check::page_size(page_size).map_err(|d| Error::invalid("page_size", d))?;
        authz::read(caller, &caller.organization_scope())?;
        let organization = self.organization_of_user(caller, &user_id).await?;
        authz::read(
            caller,
            &ResourceScope::Organization(organization.to_string()),
        )?;
        let query = format!("api_keys|{user_id}|{state:?}");
        let after = self
            .page_tokens
            .decode(&query, page_token, |id| ApiKeyId::parse(id).is_some())?;
        let mut keys = self
            .store
            .list_api_keys(
                organization.as_str(),
                user_id.as_str(),
                after.as_deref(),
                limit + 1,
                state.map(|state| (state, self.now())),
            )
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, user_id.as_str()))?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut keys, limit, &query, |k| &k.id);
        Ok(ApiKeyPage {
            api_keys: keys,
            next_page_token,
        })
    }

    /// Revokes a key at once, on this replica's cache too; revoking a revoked key keeps its
    /// first revocation.
    pub async fn revoke_api_key(
        &self,
        caller: &Principal,
        id: &str,
        reason: &str,
    ) -> Result<ApiKey> {
        let id = check::id("id", id, ApiKeyId::parse, ApiKeyId::PREFIX)?;
        check::text(reason, check::MAX_DESCRIPTION_LEN).map_err(|d| Error::invalid("reason", d))?;
        authz::manage(caller, &caller.organization_scope())?;
        let organization = self.organization_of_key(caller, &id).await?;
        let tx = self.store.begin().await?;
        let key = tx
            .api_key(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ApiKey, id.as_str()))?;
        let owner = ServiceUserId::from_stored(key.service_user_id.clone());
        self.managed_service_user(&tx, caller, &owner).await?;
        // Read again under the owner's lock: of two concurrent revocations, the second sees
        // the first and keeps it.
        let mut key = tx
            .api_key(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ApiKey, id.as_str()))?;
        let already = key.revoke_time.is_some();
        if !already {
            let now = self.now();
            tx.revoke_api_key(id.as_str(), reason, now).await?;
            key.revoke_time = Some(now);
            key.revoke_reason = Some(reason.to_owned());
        }
        self.audit_change(
            &tx,
            organization.as_str(),
            caller,
            "RevokeApiKey",
            id.as_str(),
            details([
                ("service_user_id", key.service_user_id.clone()),
                ("already_revoked", already.to_string()),
            ]),
        )
        .await?;
        self.commit_invalidating(tx, &[Invalidation::ApiKey(id.to_string())])
            .await?;
        Ok(key)
    }
}

/// A grace period as asked for: unset means none; at most [`MAX_GRACE_PERIOD`].
pub(crate) fn grace_period(grace: Option<Duration>) -> std::result::Result<Duration, String> {
    match grace {
        None => Ok(Duration::ZERO),
        Some(d) if d.subsec_nanos() != 0 => Err("must be a whole number of seconds".into()),
        Some(d) if d > MAX_GRACE_PERIOD => Err(format!(
            "must be at most {} seconds (7 days)",
            MAX_GRACE_PERIOD.as_secs()
        )),
        Some(d) => Ok(d),
    }
}

impl Tokenmint {
    /// Gives a key of a service user the caller manages a new secret. The old secret keeps
    /// exchanging for `grace` (never past the key's expiry); an earlier grace period ends now.
    pub async fn rotate_api_key(
        &self,
        caller: &Principal,
        id: &str,
        grace: Option<Duration>,
    ) -> Result<RotatedApiKey> {
        let mut v = Violations::new();
        let parsed = check::id("id", id, ApiKeyId::parse, ApiKeyId::PREFIX)
            .map_err(|e| v.absorb(e))
            .ok();
        let grace = grace_period(grace)
            .map_err(|d| v.add("grace_period", d))
            .ok();
        v.finish()?;
        let (Some(id), Some(grace)) = (parsed, grace) else {
            return Err(Error::Internal("validated fields missing".into()));
        };
        authz::manage(caller, &caller.organization_scope())?;
        let organization = self.organization_of_key(caller, &id).await?;
        let tx = self.store.begin().await?;
        let key = tx
            .api_key(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ApiKey, id.as_str()))?;
        let owner = ServiceUserId::from_stored(key.service_user_id.clone());
        self.managed_service_user(&tx, caller, &owner).await?;
        // Read again under the owner's lock: two rotations run one after the other.
        let key = tx
            .api_key(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ApiKey, id.as_str()))?;
        match key_state(&key, self.now()) {
            KeyState::Active => {
                self.rotate_in(tx, key, grace, &Actor::from(caller), "RotateApiKey")
                    .await
            }
            state => Err(Error::FailedPrecondition(
                Reason::ApiKeyNotActive,
                format!(
                    "the key is {}; only an active key can be rotated",
                    format!("{state:?}").to_lowercase()
                ),
            )),
        }
    }

    /// Self-rotation: the holder of a key proves it with the key's newest secret (a secret in
    /// its grace period may exchange but not rotate) and gets a new one, no admin token needed.
    /// Throttled like an exchange, and bound by the key's network allowlist.
    pub async fn rotate_own_api_key(
        &self,
        key_id: &str,
        secret: &str,
        grace: Option<Duration>,
        origin: Origin,
    ) -> Result<RotatedApiKey> {
        let peer = origin.address;
        let mut v = Violations::new();
        if key_id.is_empty() {
            v.add("key_id", "is required");
        } else if ApiKeyId::parse(key_id).is_none() {
            v.add("key_id", "must be an ID like ak_…");
        }
        if secret.is_empty() {
            v.add("secret", "is required");
        }
        let grace = grace_period(grace)
            .map_err(|d| v.add("grace_period", d))
            .ok();
        v.finish()?;
        let grace = grace.unwrap_or_default();
        let cached = self
            .check_secret(key_id, secret, peer, false, self.now())
            .await?;
        crate::domain::exchange::check_network(&cached.allowed_cidrs, peer)?;
        let tx = self.store.begin().await?;
        tx.lock_organization(&cached.organization_id).await?;
        tx.lock_service_users(&[&*cached.service_user_id]).await?;
        // Checked again under the locks against the stored key, not the cached copy: of two
        // rotations racing with one secret, the second finds that secret replaced.
        let found = tx.key_principal(key_id).await?;
        let Some(found) = found.filter(|f| {
            crate::domain::principal::active_now(f, self.now())
                && ApiSecret::parse(secret)
                    .is_ok_and(|s| self.hasher.verify(&s, &f.api_key.secret_hash))
        }) else {
            return Err(Error::Unauthenticated(
                crate::domain::principal::UNAUTHENTICATED,
            ));
        };
        let actor = Actor {
            service_user_id: found.user.id.clone(),
            api_key_id: found.api_key.id.clone(),
            origin,
        };
        self.rotate_in(tx, found.api_key, grace, &actor, "RotateOwnApiKey")
            .await
    }

    /// Writes a decided rotation of `key` and commits.
    pub(crate) async fn rotate_in(
        &self,
        tx: Tx,
        mut key: ApiKey,
        grace: Duration,
        actor: &Actor,
        action: &str,
    ) -> Result<RotatedApiKey> {
        let now = self.now();
        let secret = ApiSecret::generate(&self.rng)?;
        // At most two secrets work at once: the one rotated out now replaces any earlier one.
        let previous = (!grace.is_zero()).then(|| PreviousSecret {
            hash: key.secret_hash.clone(),
            expire_time: (now + seconds(grace)).min(key.expire_time),
        });
        let hash = self.hasher.hash(&secret);
        tx.rotate_api_key(&key.id, hash.clone(), previous.clone(), now)
            .await?;
        let grace_end = previous.as_ref().map(|p| p.expire_time.to_rfc3339());
        self.audit(
            &tx,
            &key.organization_id,
            actor,
            action,
            &key.id,
            "OK",
            details([
                ("service_user_id", key.service_user_id.clone()),
                ("previous_secret_expire_time", grace_end.unwrap_or_default()),
            ]),
        )
        .await?;
        self.commit_invalidating(tx, &[Invalidation::ApiKey(key.id.clone())])
            .await?;
        key.secret_hash = hash;
        key.previous_secret = previous;
        key.rotate_time = Some(now);
        Ok(RotatedApiKey {
            previous_secret_expire_time: key.previous_secret.as_ref().map(|p| p.expire_time),
            api_key: key,
            secret,
        })
    }
}

impl Tokenmint {
    /// The organization of API key `id`, if the caller may see it.
    async fn organization_of_key(
        &self,
        caller: &Principal,
        id: &ApiKeyId,
    ) -> Result<OrganizationId> {
        let organization = self
            .store
            .organization_of_api_key(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ApiKey, id.as_str()))?;
        caller.visible(organization, Resource::ApiKey, id.as_str())
    }
}

/// Parses a ListApiKeys filter: empty, or `state = ACTIVE|REVOKED|EXPIRED`.
pub fn parse_key_state_filter(filter: &str) -> Result<Option<KeyState>> {
    let compact: String = filter.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        "" => Ok(None),
        "state=ACTIVE" => Ok(Some(KeyState::Active)),
        "state=REVOKED" => Ok(Some(KeyState::Revoked)),
        "state=EXPIRED" => Ok(Some(KeyState::Expired)),
        _ => Err(Error::invalid(
            "filter",
            "supported filters: `state = ACTIVE`, `state = REVOKED`, `state = EXPIRED`",
        )),
    }
}

fn project_scope(organization: &str, project_id: &str) -> ResourceScope {
    ResourceScope::Project {
        organization_id: organization.to_owned(),
        project_id: project_id.to_owned(),
    }
}

fn seconds(duration: Duration) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_blocks_become_ipv4() {
        assert_eq!(
            parse_cidr("::ffff:127.0.0.0/104").map(|n| n.to_string()),
            Some("127.0.0.0/8".to_owned())
        );
        assert_eq!(
            parse_cidr("::ffff:10.1.2.3").map(|n| n.to_string()),
            Some("10.1.2.3/32".to_owned())
        );
        assert_eq!(
            parse_cidr("2001:db8::1/64").map(|n| n.to_string()),
            Some("2001:db8::/64".to_owned())
        );
    }

    #[test]
    fn fractional_durations_are_refused() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(100));
        assert!(duration_in(Some(Duration::from_millis(10_500)), min, max).is_err());
        assert!(duration_in(Some(Duration::from_secs(10)), min, max).is_ok());
    }

    #[test]
    fn an_empty_scope_entry_is_invalid() {
        let mut v = Violations::new();
        assert!(parse_scopes(&mut v, &["".to_owned()]).is_empty());
        let Err(Error::InvalidArgument(violations)) = v.finish() else {
            panic!("an empty scope must be refused");
        };
        assert_eq!(violations[0].field, "scopes[0]");
    }
}
