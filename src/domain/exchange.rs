//! The exchange of an API key for an access token, and introspection of tokens. This is the hot
//! path: a cached key costs one HMAC and one signature, no database round trip.

use crate::domain::key_cache::{CachedKey, SecretHash};
use crate::domain::principal::{Principal, UNAUTHENTICATED, active_now, key_active_at};
use crate::domain::roles::{ResourceScope, TokenScope, narrow, roles_in, roles_on};
use crate::domain::validation::Violations;
use crate::domain::{Tokenmint, authz};
use crate::error::{Error, Reason, Result};
use crate::ids::ApiKeyId;
use base64::Engine;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokenmint_store::{ProjectRole, RoleScope};
use tokenmint_token::{AccessTokenClaims, ApiSecret};

/// Longest audience string.
pub const MAX_AUDIENCE_LEN: usize = 256;

/// An exchange request.
#[derive(Clone, Default)]
pub struct ExchangeRequest {
    /// The key ID.
    pub key_id: String,
    pub secret: String,
    /// Requested audience; empty means the issuer.
    pub audience: String,
    /// Requested roles, space-separated; empty means all the key allows.
    pub scope: String,
    /// Requested token lifetime, at most the key's.
    pub requested_ttl: Option<Duration>,
    /// The caller's address, for the key's CIDR allowlist.
    pub peer: Option<IpAddr>,
}

/// A minted token. No `Debug`: a token must not end up in a log line by accident.
pub struct IssuedToken {
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Expiry, seconds since the epoch.
    pub expire_time: i64,
    /// Roles it carries.
    pub scope: String,
}

/// A stored secret hash as the cache holds it; any other length is corrupt data, and fails
/// closed.
fn secret_hash(stored: Vec<u8>) -> Result<SecretHash> {
    stored
        .try_into()
        .map_err(|_| Error::Internal("a stored secret hash is not 32 bytes".into()))
}

/// PERMISSION_DENIED unless `peer` is inside `allowed` (an empty list allows anywhere).
pub(crate) fn check_network(allowed: &[ipnet::IpNet], peer: Option<IpAddr>) -> Result<()> {
    if allowed.is_empty()
        || peer
            .map(|ip| ip.to_canonical())
            .is_some_and(|ip| allowed.iter().any(|n| n.contains(&ip)))
    {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        Reason::NetworkNotAllowed,
        "this API key may not be used from your network address".into(),
    ))
}

fn unauthenticated() -> Error {
    Error::Unauthenticated(UNAUTHENTICATED)
}

impl Tokenmint {
    /// Exchanges a key ID and secret for a signed access token.
    pub async fn exchange_api_key(&self, request: ExchangeRequest) -> Result<IssuedToken> {
        let mut v = Violations::new();
        if request.key_id.is_empty() {
            v.add("key_id", "is required");
        } else if ApiKeyId::parse(&request.key_id).is_none() {
            v.add("key_id", "must be an ID like ak_…");
        }
        if request.secret.is_empty() {
            v.add("secret", "is required");
        }
        if request.audience.len() > MAX_AUDIENCE_LEN
            || request
                .audience
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            v.add(
                "audience",
                format!("must be at most {MAX_AUDIENCE_LEN} characters without spaces"),
            );
        }
        let requested = TokenScope::parse(&request.scope)
            .map_err(|unknown| {
                v.add(
                    "scope",
                    format!(
                        "{} is not a role; roles: viewer, admin, owner, superuser, or prj_…:role",
                        crate::domain::validation::echo(&unknown)
                    ),
                )
            })
            .ok();
        if request.requested_ttl.is_some_and(|ttl| ttl.is_zero()) {
            v.add("requested_ttl", "must be positive");
        }
        v.finish()?;

        // One instant for the key's expiry, the token's times, the signing key and the key's
        // activity: a key judged alive is never given a token that ends before it starts.
        let now_time = self.now();
        let now = now_time.timestamp();
        let key = self
            .check_secret(
                &request.key_id,
                &request.secret,
                request.peer,
                true,
                now_time,
            )
            .await?;
        check_network(&key.allowed_cidrs, request.peer)?;
        // Judged only for an authenticated client, so the allowlist cannot be probed without
        // a key.
        if !request.audience.is_empty()
            && request.audience != self.settings.issuer
            && !self.settings.allowed_audiences.is_empty()
            && !self.settings.allowed_audiences.contains(&request.audience)
        {
            return Err(Error::invalid(
                "audience",
                format!(
                    "{} is not an audience this server mints tokens for",
                    crate::domain::validation::echo(&request.audience)
                ),
            ));
        }

        let carried = match requested.filter(|r| !r.is_empty()) {
            None => TokenScope {
                roles: key.roles.to_vec(),
                projects: key.project_roles.to_vec(),
            },
            Some(requested) => {
                let covered = narrow(&key.roles, &requested.roles);
                let refused = TokenScope {
                    roles: requested
                        .roles
                        .iter()
                        .copied()
                        .filter(|r| !covered.contains(r))
                        .collect(),
                    projects: requested
                        .projects
                        .iter()
                        .filter(|p| {
                            narrow(&roles_on(&key.project_roles, &p.project_id), &[p.role])
                                .is_empty()
                        })
                        .cloned()
                        .collect(),
                };
                if !refused.is_empty() {
                    return Err(Error::invalid(
                        "scope",
                        format!(
                            "this key may not carry: {}",
                            crate::domain::validation::echo(&refused.to_string())
                        ),
                    ));
                }
                requested
            }
        };
        let lifetime = request
            .requested_ttl
            .map(|ttl| (ttl.as_secs().max(1) as i64).min(key.token_lifetime_seconds))
            .unwrap_or(key.token_lifetime_seconds)
            // A token never outlives its key, so offline verifiers stop accepting it in time too.
            .min(key.expire_time - now);
        let audience = if request.audience.is_empty() {
            self.settings.issuer.clone()
        } else {
            request.audience
        };
        let scope = carried.to_string();
        let claims = AccessTokenClaims {
            iss: self.settings.issuer.clone(),
            sub: key.service_user_id.to_string(),
            aud: audience,
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: new_token_id(),
            client_id: key.key_id.to_string(),
            scope: scope.clone(),
            organization_id: key.organization_id.to_string(),
        };
        let access_token = self.keyring.sign(&claims, now_time)?;
        self.activity.record_use(
            &key.key_id,
            &key.organization_id,
            &key.service_user_id,
            request.peer,
            now_time,
        );
        Ok(IssuedToken {
            access_token,
            expires_in: lifetime,
            expire_time: claims.exp,
            scope,
        })
    }

    /// The active key `key_id` if `secret` is its secret, or (when `grace` allows) its previous
    /// secret within the grace period. Refused without a look at the secret while the caller's
    /// address or the key ID is throttled; every failure counts towards both.
    pub(crate) async fn check_secret(
        &self,
        key_id: &str,
        secret: &str,
        peer: Option<IpAddr>,
        grace: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<CachedKey>> {
        self.throttle
            .check(peer, key_id, now)
            .map_err(Error::Throttled)?;
        let verified = self.verify_secret(key_id, secret, grace, now).await?;
        if verified.is_none() {
            self.throttle.record_failure(peer, key_id, now);
        }
        verified.ok_or_else(unauthenticated)
    }

    async fn verify_secret(
        &self,
        key_id: &str,
        secret: &str,
        grace: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Arc<CachedKey>>> {
        // A mistyped or foreign secret fails its checksum here, before any lookup.
        let Ok(secret) = ApiSecret::parse(secret) else {
            return Ok(None);
        };
        let now = now.timestamp();
        // At most one reload, whatever the caches admit.
        for first in [true, false] {
            let matched = match self.active_key(key_id).await? {
                None => {
                    self.hasher.verify_unknown(&secret);
                    None
                }
                Some(key) => {
                    let current = self.hasher.verify(&secret, &key.secret_hash);
                    // Checked whether or not the current one matched, so both take the same
                    // time.
                    let previous = key.previous_secret.as_deref().is_some_and(|(hash, until)| {
                        self.hasher.verify(&secret, hash) && now < *until
                    });
                    (current || (grace && previous)).then_some(key)
                }
            };
            match matched {
                Some(key) if key.expire_time <= now => {
                    self.key_cache.forget_key(&key.key_id);
                    return Ok(None);
                }
                Some(key) => return Ok(Some(key)),
                // The cached copy may predate a rotation or creation through another replica.
                None if first && self.key_cache.reload_after_failure(key_id) => continue,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The verification data of an active key, from the cache or the database.
    async fn active_key(&self, key_id: &str) -> Result<Option<Arc<CachedKey>>> {
        if let Some(known) = self.key_cache.get(key_id) {
            return Ok(known.into_active());
        }
        let _loading = self.key_cache.lock_for_load(key_id).await;
        if let Some(known) = self.key_cache.get(key_id) {
            return Ok(known.into_active());
        }
        let generation = self.key_cache.generation();
        let Some(found) = self.store.find_exchange_key(key_id).await? else {
            self.key_cache.insert_inactive(generation, key_id, None);
            return Ok(None);
        };
        if !key_active_at(
            found.revoke_time,
            found.expire_time,
            found.user_state,
            self.now(),
        ) {
            self.key_cache
                .insert_inactive(generation, key_id, Some(found.service_user_id));
            return Ok(None);
        }
        let organization = ResourceScope::Organization(found.organization_id.clone());
        let user_roles = roles_in(&found.role_bindings, &organization);
        // A key carries the roles fixed at its creation that its user still holds.
        let roles = narrow(&user_roles, &found.scopes);
        let mut project_roles: Vec<ProjectRole> = found
            .role_bindings
            .iter()
            .filter(|b| b.organization_id == found.organization_id)
            .filter_map(|b| match &b.scope {
                RoleScope::Project(project_id) => Some((project_id, b.role)),
                _ => None,
            })
            .flat_map(|(project_id, held)| {
                narrow(&[held], &roles_on(&found.project_scopes, project_id))
                    .into_iter()
                    .map(|role| ProjectRole {
                        project_id: project_id.clone(),
                        role,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        project_roles.sort();
        project_roles.dedup();
        let previous_secret = match found.previous_secret {
            Some(p) => Some((secret_hash(p.hash)?, p.expire_time.timestamp())),
            None => None,
        };
        let entry = Arc::new(CachedKey::new(
            found.id,
            found.service_user_id,
            self.key_cache.organization(&found.organization_id),
            secret_hash(found.secret_hash)?,
            previous_secret,
            found.expire_time.timestamp(),
            found.token_lifetime.num_seconds(),
            found.allowed_cidrs,
            roles,
            project_roles,
        ));
        self.key_cache.insert(generation, entry.clone());
        Ok(Some(entry))
    }

    /// The claims of `token` if it is active right now: well signed, unexpired, and its key and
    /// user still active (read from the database, not the cache). Otherwise `None`. A caller
    /// learns about tokens of its own organization only, unless it is a superuser.
    pub async fn introspect_token(
        &self,
        caller: &Principal,
        token: &str,
    ) -> Result<Option<AccessTokenClaims>> {
        let Ok(claims) = self
            .keyring
            .verify(token, None, self.now().timestamp())
            .await
        else {
            return Ok(None);
        };
        if !authz::introspect(caller, &claims.organization_id) {
            return Ok(None);
        }
        let Some(current) = self.store.find_key_principal(&claims.client_id).await? else {
            return Ok(None);
        };
        let active = active_now(&current, self.now())
            && current.user.id == claims.sub
            && current.user.organization_id == claims.organization_id;
        Ok(active.then_some(claims))
    }
}

/// A fresh `jti`: 128 random bits from the thread's generator (rand's `ThreadRng`, a ChaCha
/// CSPRNG seeded and reseeded from the operating system). A token ID must be unique and
/// unguessable, not secret, so it needs no system call of its own: taking it from `getrandom`
/// each time was one system call per exchange, 2 % of the server's time.
fn new_token_id() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_secret_hash_of_the_wrong_length_fails_closed() {
        assert_eq!(secret_hash(vec![7; 32]).unwrap(), [7; 32]);
        for wrong in [vec![], vec![7; 31], vec![7; 33]] {
            assert!(matches!(secret_hash(wrong), Err(Error::Internal(_))));
        }
    }
}
