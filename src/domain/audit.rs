//! The audit trail. Every change writes its event inside the change's own unit of work, so the
//! two commit together or not at all (an event that cannot be written fails the change with
//! UNAVAILABLE). Events form one hash chain per organization (the platform's has an empty
//! organization ID): each carries the hash of the one before it, so a stored event changed or
//! removed afterwards is found by [`Tokenmint::verify_audit_chains`]. Never a secret or a token.

use crate::domain::principal::Principal;
use crate::domain::roles::ResourceScope;
use crate::domain::{Tokenmint, authz};
use crate::error::{Error, Result};
use chrono::SecondsFormat;
use ring::digest;
use std::collections::BTreeMap;
use std::net::IpAddr;
use tokenmint_store::{AuditEvent, AuditQuery, Store, Tx};

/// Where a call came from, for its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (behind trusted proxies, the one they name).
    pub address: Option<IpAddr>,
    /// The caller's `x-request-id`, if it sent one (at most 128 visible ASCII characters).
    pub request_id: String,
}

/// Who did something: a principal, or a key's holder proving itself with the key's secret.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub service_user_id: String,
    pub api_key_id: String,
    pub origin: Origin,
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Self {
            service_user_id: p.service_user_id.to_string(),
            api_key_id: p.api_key_id.to_string(),
            origin: p.origin.clone(),
        }
    }
}

/// What an event says beyond who, what and where.
pub type Details = BTreeMap<String, String>;

/// Builds [`Details`] from pairs.
pub fn details<const N: usize>(pairs: [(&str, String); N]) -> Details {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The hash of an event: SHA-256 over its previous hash and every field, as a JSON array (a
/// canonical form: fixed order, details sorted by key).
pub fn event_hash(event: &AuditEvent) -> String {
    let canonical = serde_json::json!([
        event.previous_hash,
        event.id,
        event.organization_id,
        event.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        event.actor_id,
        event.actor_key_id,
        event.action,
        event.target_id,
        event.outcome,
        event.source_address,
        event.request_id,
        event.details,
    ]);
    let digest = digest::digest(&digest::SHA256, canonical.to_string().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An ID after `last` on its chain: a fresh ULID, or, when the clock or another replica's
/// ULID would sort before `last`, the next one after it, so a chain's IDs increase.
pub(crate) fn next_id(last: Option<&str>) -> String {
    let fresh = ulid::Ulid::new();
    let after = last
        .and_then(|id| id.strip_prefix("ev_"))
        .and_then(|u| ulid::Ulid::from_string(&u.to_ascii_uppercase()).ok())
        .filter(|previous| *previous >= fresh)
        .and_then(|previous| previous.increment());
    format!(
        "ev_{}",
        after.unwrap_or(fresh).to_string().to_ascii_lowercase()
    )
}

/// The per-principal failure-event counters: a minute each, at most 100,000 principals.
pub fn failure_budget() -> moka::sync::Cache<String, u32> {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(std::time::Duration::from_secs(60))
        .build()
}

/// Failure events one principal may write a minute before its failures are only counted.
pub const FAILURE_EVENTS_PER_MINUTE: u32 = 60;

/// A target named by a caller's input, as a failure event keeps it: an ID or a name (lowercase
/// letters, digits, `-` and `_`, at most 64), or nothing.
fn safe_target(target: &str) -> String {
    if target.len() <= 64
        && target
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        target.to_owned()
    } else {
        "(invalid)".to_owned()
    }
}

/// The `organization_id` that names the platform's chain in ListAuditEvents.
pub const PLATFORM_CHAIN: &str = "platform";

/// One page of events, newest first.
#[derive(Debug)]
pub struct AuditEventPage {
    pub audit_events: Vec<AuditEvent>,
    /// Token for the next (older) page, empty on the last.
    pub next_page_token: String,
}

/// Parses a ListAuditEvents filter: terms joined by `AND`.
pub fn parse_filter(filter: &str, organization_id: &str) -> Result<AuditQuery> {
    let mut query = AuditQuery {
        organization_id: organization_id.to_owned(),
        ..AuditQuery::default()
    };
    let invalid = |term: &str| {
        Error::invalid(
            "filter",
            format!(
                "{} is not a term like `action = CreateApiKey`, `actor_id = su_…`, `target_id = …`, \
                 `outcome = OK`, `time >= 2026-01-01T00:00:00Z` or `time < …`, joined by AND",
                crate::domain::validation::echo(term)
            ),
        )
    };
    if filter.trim().is_empty() {
        return Ok(query);
    }
    let upper = filter.to_ascii_uppercase();
    let mut terms = Vec::new();
    let mut start = 0;
    for (at, _) in upper.match_indices(" AND ") {
        terms.push(&filter[start..at]);
        start = at + 5;
    }
    terms.push(&filter[start..]);
    if terms.len() > 8 {
        return Err(Error::invalid("filter", "at most 8 terms"));
    }
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for term in terms {
        let term = term.trim();
        let (field, op, value) = [">=", "<", "="]
            .iter()
            .find_map(|op| {
                term.split_once(op)
                    .map(|(f, v)| (f.trim(), *op, v.trim().trim_matches('"')))
            })
            .ok_or_else(|| invalid(term))?;
        // Values are IDs, names, code names and times: none has a space (a stray `AND` would).
        if value.is_empty() || value.len() > 256 || value.contains(char::is_whitespace) {
            return Err(invalid(term));
        }
        if seen.contains(&(field, op)) {
            return Err(Error::invalid(
                "filter",
                format!("{field} {op} is given twice"),
            ));
        }
        seen.push((field, op));
        let time = || {
            chrono::DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| invalid(term))
        };
        match (field, op) {
            ("action", "=") => query.action = Some(value.to_owned()),
            ("actor_id", "=") => query.actor_id = Some(value.to_owned()),
            ("target_id", "=") => query.target_id = Some(value.to_owned()),
            ("outcome", "=") => query.outcome = Some(value.to_owned()),
            ("time", ">=") => query.time_from = Some(time()?),
            ("time", "<") => query.time_to = Some(time()?),
            _ => return Err(invalid(term)),
        }
    }
    Ok(query)
}

/// Whether `id` reads as an event ID: `ev_` and a ULID.
pub fn is_event_id(id: &str) -> bool {
    id.strip_prefix("ev_")
        .is_some_and(|u| ulid::Ulid::from_string(&u.to_ascii_uppercase()).is_ok())
}

/// A chain's first broken link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The chain (empty: the platform's).
    pub organization_id: String,
    /// The first event whose hash or link does not check out.
    pub event_id: String,
    pub reason: String,
}

impl Tokenmint {
    /// Appends an event to `organization`'s chain inside `tx`. A failure is UNAVAILABLE: the
    /// caller's change must not commit without its event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit(
        &self,
        tx: &Tx,
        organization: &str,
        actor: &Actor,
        action: &str,
        target_id: &str,
        outcome: &str,
        details: Details,
    ) -> Result<()> {
        let unavailable = |e| Error::Unavailable(e);
        tx.lock_audit_chain(organization)
            .await
            .map_err(unavailable)?;
        // The chain's newest event or, when retention removed them all, the last one removed.
        let last = match tx
            .last_audit_event(organization)
            .await
            .map_err(unavailable)?
        {
            Some(event) => Some((event.id, event.hash)),
            None => tx.audit_anchor(organization).await.map_err(unavailable)?,
        };
        let mut event = AuditEvent {
            id: next_id(last.as_ref().map(|(id, _)| id.as_str())),
            organization_id: organization.to_owned(),
            time: self.now(),
            actor_id: actor.service_user_id.clone(),
            actor_key_id: actor.api_key_id.clone(),
            action: action.to_owned(),
            target_id: target_id.to_owned(),
            outcome: outcome.to_owned(),
            source_address: actor
                .origin
                .address
                .map(|a| a.to_string())
                .unwrap_or_default(),
            request_id: actor.origin.request_id.clone(),
            details,
            previous_hash: last.map(|(_, hash)| hash).unwrap_or_default(),
            hash: String::new(),
        };
        event.hash = event_hash(&event);
        tx.insert_audit_event(event).await.map_err(unavailable)
    }

    /// Appends the success event of a change `caller` made, inside the change's unit.
    pub(crate) async fn audit_change(
        &self,
        tx: &Tx,
        organization: &str,
        caller: &Principal,
        action: &str,
        target_id: &str,
        details: Details,
    ) -> Result<()> {
        self.audit(
            tx,
            organization,
            &Actor::from(caller),
            action,
            target_id,
            "OK",
            details,
        )
        .await
    }

    /// Records a change that failed, in a unit of its own (the change's was rolled back).
    /// Best effort: a failure to record is logged, and the caller still gets the change's error.
    /// The target is the caller's own input, so it is kept only when it reads as an ID or a
    /// name. Each principal gets [`FAILURE_EVENTS_PER_MINUTE`] such events a minute; past that,
    /// its failures are only counted, per source, like failed exchanges, so a principal
    /// refused over and over cannot fill the disk.
    pub async fn audit_failure(
        &self,
        organization: &str,
        actor: &Actor,
        action: &'static str,
        target_id: &str,
        outcome: &'static str,
    ) {
        let spent = self
            .failure_budget
            .entry(actor.api_key_id.clone())
            .and_upsert_with(|n| n.map_or(1, |e| e.into_value().saturating_add(1)))
            .into_value();
        if spent > FAILURE_EVENTS_PER_MINUTE {
            self.activity
                .record_failure(action, "", actor.origin.address, outcome, self.now());
            return;
        }
        self.audit_alone(
            organization,
            actor,
            action,
            &safe_target(target_id),
            outcome,
            Details::new(),
        )
        .await;
    }

    /// Records an aggregate of failures on the platform's chain, best effort.
    pub(crate) async fn audit_failure_with(
        &self,
        action: &str,
        actor: &Actor,
        outcome: &str,
        details: Details,
    ) {
        self.audit_alone("", actor, action, "", outcome, details)
            .await;
    }

    async fn audit_alone(
        &self,
        organization: &str,
        actor: &Actor,
        action: &str,
        target_id: &str,
        outcome: &str,
        details: Details,
    ) {
        let written = async {
            let tx = self.store.begin().await?;
            self.audit(
                &tx,
                organization,
                actor,
                action,
                target_id,
                outcome,
                details,
            )
            .await?;
            tx.commit().await?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, action, "could not record a failure in the audit trail");
        }
    }

    /// Lists the events of an organization (owners and superusers) or of the platform
    /// (superusers), newest first.
    pub async fn list_audit_events(
        &self,
        caller: &Principal,
        organization_id: &str,
        filter: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<AuditEventPage> {
        let limit = crate::domain::validation::page_size(page_size)
            .map_err(|d| Error::invalid("page_size", d))?;
        let chain = self.readable_chain(caller, organization_id).await?;
        let mut query = parse_filter(filter, &chain)?;
        let bound = format!("audit|{chain}|{filter}");
        query.before_id = self.page_tokens.decode(&bound, page_token, is_event_id)?;
        let mut events = self.store.list_audit_events(&query, limit + 1).await?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut events, limit, &bound, |e| &e.id);
        Ok(AuditEventPage {
            audit_events: events,
            next_page_token,
        })
    }

    /// The chain a caller may read: its organization's (owners, superusers) or, for
    /// [`PLATFORM_CHAIN`], the platform's (superusers). Checked against the caller's current
    /// roles, so a watcher whose role is taken away is stopped.
    pub async fn readable_chain(
        &self,
        caller: &Principal,
        organization_id: &str,
    ) -> Result<String> {
        if organization_id == PLATFORM_CHAIN {
            authz::superuser_only(caller, "read the platform's audit events")?;
            return Ok(String::new());
        }
        let organization = authz::organization(caller, organization_id)?;
        authz::read_audit(
            caller,
            &ResourceScope::Organization(organization.to_string()),
        )?;
        self.existing_organization(&organization).await?;
        Ok(organization.to_string())
    }

    /// Up to `limit` events of `chain` after `after_id` (from its start when `None`), oldest
    /// first.
    pub async fn audit_events_after(
        &self,
        chain: &str,
        after_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        Ok(self.store.audit_chain(chain, after_id, limit).await?)
    }

    /// The newest event ID of `chain`, where a watcher that wants only new events starts.
    pub async fn newest_audit_event(&self, chain: &str) -> Result<Option<String>> {
        let query = AuditQuery {
            organization_id: chain.to_owned(),
            ..AuditQuery::default()
        };
        Ok(self
            .store
            .list_audit_events(&query, 1)
            .await?
            .into_iter()
            .next()
            .map(|e| e.id))
    }
}

/// One chain as [`verify_audit_chains`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain (empty: the platform's).
    pub organization_id: String,
    pub events: u64,
    /// Its newest event and that event's hash: keep them elsewhere to notice later if events
    /// at the end of the chain were removed, which the chain alone cannot show.
    pub head_id: String,
    pub head_hash: String,
}

/// Checks every chain from its oldest retained event: each event's hash, each link, and that
/// the first one starts the chain (an empty previous hash) or links to where retention cut it.
/// Reads only; returns each chain's first broken link, and each intact chain's head.
pub async fn verify_audit_chains(store: &Store) -> Result<(Vec<BrokenLink>, Vec<ChainHead>)> {
    let mut broken = Vec::new();
    let mut heads = Vec::new();
    for chain in store.audit_chains().await? {
        let start = store.audit_anchor(&chain).await?;
        let mut previous: Option<AuditEvent> = None;
        let mut after: Option<String> = None;
        let mut events = 0u64;
        let mut intact = true;
        'chain: loop {
            let page = store.audit_chain(&chain, after.as_deref(), 1000).await?;
            if page.is_empty() {
                break;
            }
            for event in page {
                events += 1;
                let expected_previous = match &previous {
                    Some(previous) => Some(previous.hash.as_str()),
                    None => Some(start.as_ref().map_or("", |(_, hash)| hash.as_str())),
                };
                let reason = if event_hash(&event) != event.hash {
                    Some("its hash does not match its contents".to_owned())
                } else if expected_previous != Some(event.previous_hash.as_str()) {
                    Some(match &previous {
                        Some(previous) => {
                            format!("it does not link to the event before it ({})", previous.id)
                        }
                        None => "the events before it are missing (the chain's start was removed)"
                            .to_owned(),
                    })
                } else {
                    None
                };
                if let Some(reason) = reason {
                    broken.push(BrokenLink {
                        organization_id: chain.clone(),
                        event_id: event.id,
                        reason,
                    });
                    intact = false;
                    break 'chain;
                }
                after = Some(event.id.clone());
                previous = Some(event);
            }
        }
        if intact && let Some(head) = previous {
            heads.push(ChainHead {
                organization_id: chain,
                events,
                head_id: head.id,
                head_hash: head.hash,
            });
        }
    }
    Ok((broken, heads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_along_a_chain_even_against_a_later_last_id() {
        let far = format!(
            "ev_{}",
            ulid::Ulid::from_parts(u64::MAX >> 16, 0)
                .to_string()
                .to_ascii_lowercase()
        );
        let next = next_id(Some(&far));
        assert!(next > far, "{next} after {far}");
        assert!(next_id(None).starts_with("ev_"));
    }
}
