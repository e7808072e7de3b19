//! The audit trail: one event per change, written with it; failures recorded alone; a hash chain
//! that `tokenmint audit verify` checks; reading with filters and pages, by owners only.

use crate::harness::{Admin, Backend, Server, create_key, create_user, violated_fields};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    AuditEvent, CreateProjectRequest, DeleteServiceUserRequest, DisableServiceUserRequest,
    EnableServiceUserRequest, ListAuditEventsRequest, Project, RevokeApiKeyRequest,
    RotateApiKeyRequest, WatchAuditEventsRequest,
};
use tonic::Code;

/// Every change event of the caller's organization, newest first (exchange counts, flushed on
/// their own schedule, left out).
async fn events(admin: &mut Admin) -> Vec<AuditEvent> {
    let mut all = list(admin, "").await.unwrap();
    all.retain(|e| e.action != "ExchangeApiKey");
    all
}

async fn list(admin: &mut Admin, filter: &str) -> Result<Vec<AuditEvent>, tonic::Status> {
    Ok(admin
        .list_audit_events(ListAuditEventsRequest {
            filter: filter.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .audit_events)
}

fn with_request_id<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

async fn every_change_writes_exactly_one_event_with_its_fields(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let before = events(&mut admin).await.len();
    let user = create_user(&mut admin, "audited").await;
    let (key, _) = create_key(&mut admin, &user.id, "k").await;
    let mut expected = vec![
        ("CreateServiceUser", user.id.clone()),
        ("CreateApiKey", key.id.clone()),
    ];
    admin
        .rotate_api_key(with_request_id(
            RotateApiKeyRequest {
                id: key.id.clone(),
                grace_period: None,
            },
            "req-rotate-1",
        ))
        .await
        .unwrap();
    expected.push(("RotateApiKey", key.id.clone()));
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: key.id.clone(),
            reason: "done".into(),
        })
        .await
        .unwrap();
    expected.push(("RevokeApiKey", key.id.clone()));
    admin
        .disable_service_user(DisableServiceUserRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap();
    expected.push(("DisableServiceUser", user.id.clone()));
    admin
        .enable_service_user(EnableServiceUserRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap();
    expected.push(("EnableServiceUser", user.id.clone()));
    let project = admin
        .create_project(CreateProjectRequest {
            organization_id: String::new(),
            project: Some(Project {
                name: "web".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    expected.push(("CreateProject", project.id.clone()));
    admin
        .delete_service_user(DeleteServiceUserRequest {
            id: user.id.clone(),
            force: true,
        })
        .await
        .unwrap();
    expected.push(("DeleteServiceUser", user.id.clone()));

    let mut all = events(&mut admin).await;
    assert_eq!(all.len(), before + expected.len(), "one event per change");
    all.truncate(expected.len());
    all.reverse();
    let seen: Vec<(String, String)> = all
        .iter()
        .map(|e| (e.action.clone(), e.target_id.clone()))
        .collect();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(a, t)| (a.to_owned(), t))
        .collect();
    assert_eq!(seen, expected);
    for event in &all {
        assert_eq!(event.outcome, "OK");
        assert_eq!(event.organization_id, server.admin.organization_id);
        assert_eq!(event.actor_id, server.admin.service_user_id);
        assert_eq!(event.actor_key_id, server.admin.key_id);
        assert_eq!(event.source_address, "127.0.0.1");
        assert_eq!(event.hash.len(), 64);
    }
    assert_eq!(all[2].request_id, "req-rotate-1");
    assert_eq!(
        all[7].details["revoked_keys"], "",
        "the key was revoked before"
    );
    // Each links to the one before it.
    let chain = list(&mut admin, "").await.unwrap();
    for pair in chain.windows(2) {
        assert_eq!(pair[0].previous_hash, pair[1].hash);
    }
}

async fn a_denied_change_records_only_its_failure(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let target = create_user(&mut admin, "target").await;
    let viewer = server.principal_with_roles("watcher", &["viewer"]).await;
    let before = events(&mut admin).await.len();
    let status = server
        .admin_for(&viewer)
        .await
        .create_api_key(crate::harness::key_request(&target.id, "sneaky"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let all = events(&mut admin).await;
    assert_eq!(all.len(), before + 1);
    let failure = &all[0];
    assert_eq!(failure.action, "CreateApiKey");
    assert_eq!(failure.outcome, "PERMISSION_DENIED");
    assert_eq!(failure.actor_id, viewer.service_user_id);
    assert_eq!(failure.target_id, target.id);
}

async fn tampering_with_a_stored_event_is_found_by_audit_verify(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    for name in ["a", "b", "c"] {
        create_user(&mut admin, name).await;
    }
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    let out = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(out.contains("ok: "), "{out}");
    // It names each chain's head, to keep elsewhere: removing events at the end shows there.
    let newest = events(&mut admin).await[0].clone();
    assert!(
        out.contains(&newest.id) && out.contains(&newest.hash),
        "{out}"
    );

    let all = events(&mut admin).await;
    let victim = &all[1];
    let db = server.database().await;
    db.execute_unprepared(&format!(
        "UPDATE audit_events SET target_id = 'su_01jzzzzzzzzzzzzzzzzzzzzzzz' WHERE id = '{}'",
        victim.id
    ))
    .await
    .unwrap();
    let broken = server.cli(&["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(
        out.contains(&victim.id) && out.contains(&server.admin.organization_id),
        "{out}"
    );

    // Put it back, then remove one: the link after the hole is named.
    db.execute_unprepared(&format!(
        "UPDATE audit_events SET target_id = '{}' WHERE id = '{}'",
        victim.target_id, victim.id
    ))
    .await
    .unwrap();
    assert!(server.cli(&["audit", "verify"]).status.success());
    db.execute_unprepared(&format!(
        "DELETE FROM audit_events WHERE id = '{}'",
        victim.id
    ))
    .await
    .unwrap();
    let broken = server.cli(&["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).contains(&all[0].id));

    // Removing the start of a chain (here its first event, the bootstrap's) is found too.
    let first = all.last().unwrap();
    db.execute_unprepared(&format!(
        "DELETE FROM audit_events WHERE id = '{}'",
        first.id
    ))
    .await
    .unwrap();
    let broken = server.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&broken.stdout).into_owned();
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        out.contains("start was removed") || out.contains(&all[all.len() - 2].id),
        "{out}"
    );
}

async fn owners_read_the_trail_with_filters_and_pages(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "paged").await;
    for i in 0..5 {
        create_key(&mut admin, &user.id, &format!("k{i}")).await;
    }
    let keys = list(&mut admin, "action = CreateApiKey AND outcome = OK")
        .await
        .unwrap();
    assert_eq!(keys.len(), 5);
    assert!(keys.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let since = keys[1].time.unwrap();
    let since = chrono::DateTime::from_timestamp(since.seconds, since.nanos as u32)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let recent = list(
        &mut admin,
        &format!("action = CreateApiKey AND time >= {since}"),
    )
    .await
    .unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(
        list(&mut admin, &format!("target_id = {}", user.id))
            .await
            .unwrap()
            .len(),
        1
    );

    let everything = list(&mut admin, "").await.unwrap();
    let (mut paged, mut token) = (Vec::new(), String::new());
    loop {
        let page = admin
            .list_audit_events(ListAuditEventsRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.audit_events.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<String> = everything.iter().map(|e| e.id.clone()).collect();
    assert_eq!(paged, ids, "every event once, in order");

    for bad in [
        "action ~ x",
        "colour = red",
        "time >= yesterday",
        "action = CreateApiKey AND action = CreateServiceUser",
        "action = CreateApiKey AND",
    ] {
        let status = list(&mut admin, bad).await.unwrap_err();
        assert_eq!(violated_fields(&status), ["filter"], "{bad}");
    }
    let viewer = server.principal_with_roles("reader", &["admin"]).await;
    let status = list(&mut server.admin_for(&viewer).await, "")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let foreign = server
        .foreign_principal_with(&[tokenmint_store::Role::Owner])
        .await;
    let status = server
        .admin_for(&foreign)
        .await
        .list_audit_events(ListAuditEventsRequest {
            organization_id: server.admin.organization_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn no_secret_or_token_reaches_any_event(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "secretive").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let rotated = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: key.id.clone(),
            grace_period: None,
        })
        .await
        .unwrap()
        .into_inner();
    let token = server.admin_token().await;
    let dump = format!("{:?}", events(&mut admin).await);
    for needle in [
        secret.as_str(),
        rotated.secret.as_str(),
        token.as_str(),
        "tmsk_",
        "eyJ",
    ] {
        assert!(!dump.contains(needle), "an event holds {needle:.12}…");
    }
}

/// Events of `organization_id`'s chain (`platform` for the platform's) matching `filter`, as
/// the bootstrap superuser reads them, polled until `done` holds (ten seconds at most).
pub(crate) async fn wait_for_events(
    server: &Server,
    organization_id: &str,
    filter: &str,
    done: impl Fn(&[AuditEvent]) -> bool,
) -> Vec<AuditEvent> {
    let start = std::time::Instant::now();
    loop {
        let found = server
            .admin()
            .await
            .list_audit_events(ListAuditEventsRequest {
                organization_id: organization_id.into(),
                filter: filter.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .audit_events;
        if done(&found) || start.elapsed() > std::time::Duration::from_secs(10) {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub(crate) fn counted(events: &[AuditEvent]) -> u64 {
    events
        .iter()
        .map(|e| e.details["count"].parse::<u64>().unwrap())
        .sum()
}

async fn exchanges_are_counted_per_key_and_set_its_last_use(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--activity-flush-interval", "1s"]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "busy").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    for _ in 0..5 {
        server.token_for(&key.id, &secret).await.unwrap();
    }
    let filter = format!("action = ExchangeApiKey AND target_id = {}", key.id);
    let found = wait_for_events(&server, "", &filter, |e| counted(e) >= 5).await;
    assert_eq!(counted(&found), 5, "{found:?}");
    assert!(
        found.len() <= 2,
        "one event per key per interval, not per exchange"
    );
    let event = &found[0];
    assert_eq!(event.outcome, "OK");
    assert_eq!(event.actor_id, user.id);
    assert_eq!(event.actor_key_id, key.id);
    assert_eq!(event.details["addresses"], "127.0.0.1");
    let stored = admin
        .get_api_key(tokenmint::proto::admin::v1::GetApiKeyRequest { id: key.id })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.last_used_time.is_some());
    assert_eq!(stored.last_used_address, "127.0.0.1");
    let user = admin
        .get_service_user(tokenmint::proto::admin::v1::GetServiceUserRequest { id: user.id })
        .await
        .unwrap()
        .into_inner();
    assert!(user.last_active_time.is_some());
}

async fn failed_exchanges_are_counted_per_source_on_the_platform_chain(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--activity-flush-interval", "1s"]).await
    else {
        return;
    };
    let mut client = tokenmint::proto::auth::v1::auth_service_client::AuthServiceClient::new(
        server.channel_from("127.0.0.2").await,
    );
    for i in 0..12 {
        let _ = client
            .exchange_api_key(tokenmint::proto::auth::v1::ExchangeApiKeyRequest {
                key_id: format!("ak_01jzzzzzzzzzzzzzzzzzzzzzz{}", i % 10),
                secret: server.admin.secret.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
    }
    let found = wait_for_events(&server, "platform", "action = ExchangeApiKey", |e| {
        counted(e) >= 12
    })
    .await;
    assert_eq!(counted(&found), 12, "{found:?}");
    assert!(
        found.len() <= 2,
        "aggregated per source, not one row per guess"
    );
    assert!(found.iter().all(|e| e.source_address == "127.0.0.2"
        && e.outcome == "UNAUTHENTICATED"
        && e.organization_id.is_empty()));
    assert!(found[0].details["key_ids"].contains("ak_01jzzzzzzzzzzzzzzzzzzzzzz"));

    // A secret pasted as the key ID never reaches the trail.
    let _ = client
        .exchange_api_key(tokenmint::proto::auth::v1::ExchangeApiKeyRequest {
            key_id: server.admin.secret.clone(),
            secret: server.admin.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let found = wait_for_events(&server, "platform", "outcome = INVALID_ARGUMENT", |e| {
        !e.is_empty()
    })
    .await;
    let dump = format!("{found:?}");
    assert!(dump.contains("(malformed)"), "{dump}");
    assert!(!dump.contains("tmsk_"), "{dump}");
    // Owners of an organization do not see the platform's chain.
    let owner = server.principal_with_roles("owner", &["owner"]).await;
    let status = server
        .admin_for(&owner)
        .await
        .list_audit_events(ListAuditEventsRequest {
            organization_id: "platform".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn a_clean_stop_writes_the_exchanges_counted_so_far(backend: Backend) {
    let Some(mut server) = Server::start_with(backend, &["--activity-flush-interval", "1h"]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "stopper").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    server.token_for(&key.id, &secret).await.unwrap();
    assert!(server.terminate(), "stopped cleanly");
    server.restart_stopped();
    let filter = format!("action = ExchangeApiKey AND target_id = {}", key.id);
    let found = wait_for_events(&server, "", &filter, |e| !e.is_empty()).await;
    assert_eq!(counted(&found), 1);
}

/// The next event of a watch, within ten seconds.
async fn next_event(
    stream: &mut tonic::Streaming<AuditEvent>,
) -> Option<Result<AuditEvent, tonic::Status>> {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("an event within ten seconds")
        .transpose()
}

async fn watch(admin: &mut Admin, after_id: &str) -> tonic::Streaming<AuditEvent> {
    admin
        .watch_audit_events(WatchAuditEventsRequest {
            organization_id: String::new(),
            after_id: after_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn a_watcher_gets_events_as_they_commit_and_resumes_after_the_last_it_saw(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut stream = watch(&mut admin, "").await;
    let first = create_user(&mut admin, "first").await;
    let seen = next_event(&mut stream).await.unwrap().unwrap();
    assert_eq!(
        (seen.action.as_str(), seen.target_id.as_str()),
        ("CreateServiceUser", first.id.as_str())
    );
    drop(stream);
    // Missed while disconnected.
    let second = create_user(&mut admin, "second").await;
    let third = create_user(&mut admin, "third").await;
    let mut stream = watch(&mut admin, &seen.id).await;
    let mut missed = Vec::new();
    while missed.len() < 2 {
        let event = next_event(&mut stream).await.unwrap().unwrap();
        if event.action == "CreateServiceUser" {
            missed.push(event.target_id);
        }
    }
    assert_eq!(missed, [second.id, third.id]);
    let status = admin
        .watch_audit_events(WatchAuditEventsRequest {
            organization_id: String::new(),
            after_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["after_id"]);
}

async fn a_watcher_whose_role_is_taken_away_is_stopped(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let owner = server.principal_with_roles("auditor", &["owner"]).await;
    let mut as_owner = server.admin_for(&owner).await;
    let mut stream = watch(&mut as_owner, "").await;
    let mut admin = server.admin().await;
    let bindings = admin
        .list_role_bindings(tokenmint::proto::admin::v1::ListRoleBindingsRequest {
            principal_id: owner.service_user_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role_bindings;
    admin
        .remove_role_binding(tokenmint::proto::admin::v1::RemoveRoleBindingRequest {
            id: bindings[0].id.clone(),
        })
        .await
        .unwrap();
    let ended = loop {
        match next_event(&mut stream).await {
            Some(Ok(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(
        ended.map(|r| r.unwrap_err().code()),
        Some(Code::PermissionDenied)
    );
}

async fn a_watch_ends_when_the_server_drains(backend: Backend) {
    let Some(mut server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut stream = watch(&mut admin, "").await;
    assert!(server.terminate(), "the server stopped cleanly, not killed");
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}

async fn expiry_notices_go_out_once_as_the_clock_moves(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--housekeeping-interval", "1s"]).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "expiring").await;
    let (key, _) = create_key(&mut admin, &user.id, "k").await;
    // Thirty-day key; the warning window is seven days. (A watcher would get these too; its
    // token would not outlive the jump of the clock, so this test lists them.)
    server.advance_clock(23 * 86_400 + 3600);
    let filter = |action: &str| format!("action = {action} AND target_id = {}", key.id);
    let warned = wait_for_events(&server, "", &filter("ApiKeyExpiring"), |e| !e.is_empty()).await;
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].actor_id, "", "the server itself");
    assert_eq!(warned[0].details["service_user_id"], user.id);
    assert!(
        wait_for_events(&server, "", &filter("ApiKeyExpired"), |_| true)
            .await
            .is_empty(),
        "not expired yet"
    );
    server.advance_clock(7 * 86_400);
    let expired = wait_for_events(&server, "", &filter("ApiKeyExpired"), |e| !e.is_empty()).await;
    assert_eq!(expired.len(), 1);
    // Several more runs: still one of each.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut admin = server.admin().await;
    for action in ["ApiKeyExpiring", "ApiKeyExpired"] {
        let found = list(
            &mut admin,
            &format!("action = {action} AND target_id = {}", key.id),
        )
        .await
        .unwrap();
        assert_eq!(found.len(), 1, "{action}");
    }
}

async fn keys_unused_for_the_configured_period_are_revoked(backend: Backend) {
    let Some(server) = Server::start_with(
        backend,
        &[
            "--housekeeping-interval",
            "1s",
            "--activity-flush-interval",
            "1s",
            "--revoke-unused-keys-after",
            "30d",
        ],
    )
    .await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "sleepy").await;
    let mut long = crate::harness::key_request(&user.id, "used");
    long.expires_in = Some(prost_types::Duration {
        seconds: 90 * 86_400,
        nanos: 0,
    });
    let used = admin
        .create_api_key(long.clone())
        .await
        .unwrap()
        .into_inner();
    long.name = "idle".into();
    let idle = admin.create_api_key(long).await.unwrap().into_inner();
    let (used_id, idle_id) = (used.api_key.unwrap().id, idle.api_key.unwrap().id);
    server.advance_clock(16 * 86_400);
    server.token_for(&used_id, &used.secret).await.unwrap();
    let mut admin = server.admin().await;
    // Wait for the use to be written.
    let start = std::time::Instant::now();
    while admin
        .get_api_key(tokenmint::proto::admin::v1::GetApiKeyRequest {
            id: used_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .last_used_time
        .is_none()
        && start.elapsed() < std::time::Duration::from_secs(10)
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.advance_clock(15 * 86_400);
    let found = wait_for_events(
        &server,
        "",
        &format!("action = RevokeApiKey AND target_id = {idle_id}"),
        |e| !e.is_empty(),
    )
    .await;
    assert_eq!(found.len(), 1);
    assert!(found[0].details["reason"].starts_with("unused since"));
    let mut admin = server.admin().await;
    let state = |id: String| {
        let mut admin = admin.clone();
        async move {
            admin
                .get_api_key(tokenmint::proto::admin::v1::GetApiKeyRequest { id })
                .await
                .unwrap()
                .into_inner()
                .state
        }
    };
    use tokenmint::proto::admin::v1::api_key::State;
    assert_eq!(state(idle_id).await, State::Revoked as i32);
    assert_eq!(state(used_id).await, State::Active as i32);
    assert!(list(&mut admin, "").await.is_ok());
}

async fn events_past_retention_are_removed_and_the_chain_still_verifies(backend: Backend) {
    let Some(server) = Server::start_with(
        backend,
        &["--housekeeping-interval", "1s", "--audit-retention", "1d"],
    )
    .await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let old = create_user(&mut admin, "old").await;
    server.advance_clock(2 * 86_400);
    let mut admin = server.admin().await;
    let new = create_user(&mut admin, "new").await;
    let start = std::time::Instant::now();
    loop {
        let targets: Vec<String> = events(&mut admin)
            .await
            .into_iter()
            .map(|e| e.target_id)
            .collect();
        if !targets.contains(&old.id) {
            assert!(targets.contains(&new.id));
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "old events remain"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
}

/// The changes `every_change_writes_exactly_one_event_with_its_fields` does not make: each
/// writes one event, on the chain of the organization it changes (the platform's for signing
/// keys), naming the right actor and target.
async fn every_other_change_writes_exactly_one_event_too(backend: Backend) {
    use tokenmint::proto::admin::v1::{
        AddAdministratorRequest, AddRoleBindingRequest, CreateOrganizationRequest,
        DeleteProjectRequest, Organization, RemoveAdministratorRequest, RemoveRoleBindingRequest,
        Role, RoleBinding, RotateSigningKeyRequest, ServiceUser, UpdateOrganizationRequest,
        UpdateServiceUserRequest,
    };
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "subject").await;
    let helper = create_user(&mut admin, "helper").await;
    let project = admin
        .create_project(CreateProjectRequest {
            organization_id: String::new(),
            project: Some(Project {
                name: "p".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;

    let mut changes: Vec<(&str, String, String)> = Vec::new(); // action, target, chain
    let org = server.admin.organization_id.clone();
    let binding = admin
        .add_role_binding(AddRoleBindingRequest {
            role_binding: Some(RoleBinding {
                principal_id: helper.id.clone(),
                role: Role::Admin as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    changes.push(("AddRoleBinding", binding.id.clone(), org.clone()));
    admin
        .add_administrator(AddAdministratorRequest {
            service_user_id: user.id.clone(),
            principal_id: helper.id.clone(),
        })
        .await
        .unwrap();
    changes.push(("AddAdministrator", user.id.clone(), org.clone()));
    admin
        .remove_administrator(RemoveAdministratorRequest {
            service_user_id: user.id.clone(),
            principal_id: helper.id.clone(),
        })
        .await
        .unwrap();
    changes.push(("RemoveAdministrator", user.id.clone(), org.clone()));
    admin
        .remove_role_binding(RemoveRoleBindingRequest {
            id: binding.id.clone(),
        })
        .await
        .unwrap();
    changes.push(("RemoveRoleBinding", binding.id.clone(), org.clone()));
    admin
        .update_service_user(UpdateServiceUserRequest {
            service_user: Some(ServiceUser {
                id: user.id.clone(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap();
    changes.push(("UpdateServiceUser", user.id.clone(), org.clone()));
    admin
        .update_organization(UpdateOrganizationRequest {
            organization: Some(Organization {
                id: org.clone(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap();
    changes.push(("UpdateOrganization", org.clone(), org.clone()));
    admin
        .delete_project(DeleteProjectRequest {
            id: project.id.clone(),
            force: false,
        })
        .await
        .unwrap();
    changes.push(("DeleteProject", project.id.clone(), org.clone()));
    server
        .auth()
        .await
        .rotate_own_api_key(tokenmint::proto::auth::v1::RotateOwnApiKeyRequest {
            key_id: key.id.clone(),
            secret,
            grace_period: None,
        })
        .await
        .unwrap();
    changes.push(("RotateOwnApiKey", key.id.clone(), org.clone()));
    let created = admin
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization {
                name: "second".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    changes.push(("CreateOrganization", created.id.clone(), created.id.clone()));
    let signing = admin
        .rotate_signing_key(RotateSigningKeyRequest { immediate: false })
        .await
        .unwrap()
        .into_inner();
    changes.push(("RotateSigningKey", signing.kid.clone(), "platform".into()));

    for (action, target, chain) in changes {
        let found = admin
            .list_audit_events(ListAuditEventsRequest {
                organization_id: if chain == org {
                    String::new()
                } else {
                    chain.clone()
                },
                filter: format!("action = {action}"),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .audit_events;
        assert_eq!(found.len(), 1, "{action}: {found:?}");
        assert_eq!(found[0].target_id, target, "{action}");
        assert_eq!(found[0].outcome, "OK", "{action}");
        let actor = if action == "RotateOwnApiKey" {
            user.id.clone()
        } else {
            server.admin.service_user_id.clone()
        };
        assert_eq!(found[0].actor_id, actor, "{action}");
    }
}

async fn a_watch_outlives_the_request_timeout(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--request-timeout", "1s"]).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut stream = watch(&mut admin, "").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let made = create_user(&mut admin, "late").await;
    let seen = next_event(&mut stream).await.unwrap().unwrap();
    assert_eq!(seen.target_id, made.id);
}

async fn the_bootstrap_opens_its_organizations_chain(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let all = events(&mut server.admin().await).await;
    let first = all.last().unwrap();
    assert_eq!(first.action, "Bootstrap");
    assert_eq!(first.target_id, server.admin.service_user_id);
    assert_eq!(first.previous_hash, "");
    assert_eq!(first.details["api_key_id"], server.admin.key_id);
}

async fn a_principal_refused_over_and_over_cannot_fill_the_trail(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let viewer = server.principal_with_roles("noisy", &["viewer"]).await;
    let mut as_viewer = server.admin_for(&viewer).await;
    let junk = format!("x\n\u{202e}{}", "y".repeat(30_000));
    for _ in 0..80 {
        as_viewer
            .create_service_user(tokenmint::proto::admin::v1::CreateServiceUserRequest {
                organization_id: String::new(),
                service_user: Some(tokenmint::proto::admin::v1::ServiceUser {
                    name: junk.clone(),
                    ..Default::default()
                }),
                role_bindings: Vec::new(),
            })
            .await
            .unwrap_err();
    }
    let mut admin = server.admin().await;
    let theirs = list(
        &mut admin,
        &format!("actor_id = {}", viewer.service_user_id),
    )
    .await
    .unwrap();
    assert_eq!(
        theirs.len(),
        60,
        "a minute's budget of failure events, then only counts"
    );
    assert!(
        theirs.iter().all(|e| e.target_id == "(invalid)"),
        "input is not copied"
    );
}

async fn watches_are_bounded_per_key(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(watch(&mut admin, "").await);
    }
    let status = admin
        .watch_audit_events(WatchAuditEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(open.pop());
    let start = std::time::Instant::now();
    loop {
        match admin
            .watch_audit_events(WatchAuditEventsRequest::default())
            .await
        {
            Ok(_) => break,
            Err(_) if start.elapsed() < std::time::Duration::from_secs(10) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(status) => panic!("a closed watch frees its slot: {status:?}"),
        }
    }
}

on_both_backends!(
    a_principal_refused_over_and_over_cannot_fill_the_trail,
    watches_are_bounded_per_key,
    the_bootstrap_opens_its_organizations_chain,
    a_watch_outlives_the_request_timeout,
    every_other_change_writes_exactly_one_event_too,
    expiry_notices_go_out_once_as_the_clock_moves,
    keys_unused_for_the_configured_period_are_revoked,
    events_past_retention_are_removed_and_the_chain_still_verifies,
    a_watcher_gets_events_as_they_commit_and_resumes_after_the_last_it_saw,
    a_watcher_whose_role_is_taken_away_is_stopped,
    a_watch_ends_when_the_server_drains,
    exchanges_are_counted_per_key_and_set_its_last_use,
    failed_exchanges_are_counted_per_source_on_the_platform_chain,
    a_clean_stop_writes_the_exchanges_counted_so_far,
    every_change_writes_exactly_one_event_with_its_fields,
    a_denied_change_records_only_its_failure,
    tampering_with_a_stored_event_is_found_by_audit_verify,
    owners_read_the_trail_with_filters_and_pages,
    no_secret_or_token_reaches_any_event,
);

/// On PostgreSQL, an audit table that refuses writes makes the change fail with UNAVAILABLE and
/// leaves nothing of it behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn an_unwritable_audit_table_fails_the_change_and_changes_nothing() {
    use sea_orm::ConnectionTrait;
    let Some(server) = Server::start(Backend::Postgres).await else {
        return;
    };
    let mut admin = server.admin().await;
    let before = crate::harness::list_users(&mut admin).await.len();
    let db = server.database().await;
    db.execute_unprepared(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await
    .unwrap();
    let status = admin
        .create_service_user(tokenmint::proto::admin::v1::CreateServiceUserRequest {
            organization_id: String::new(),
            service_user: Some(tokenmint::proto::admin::v1::ServiceUser {
                name: "unrecorded".into(),
                ..Default::default()
            }),
            role_bindings: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(crate::harness::list_users(&mut admin).await.len(), before);
    assert!(!status.message().contains("audit disk full"));
}

/// Two replicas of one PostgreSQL database: a watcher on one gets the events of changes made
/// through the other (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn a_watcher_hears_of_changes_made_through_another_replica() {
    let Some(a) = Server::start(Backend::Postgres).await else {
        return;
    };
    let b = a.replica(&[]);
    let mut on_a = a.admin().await;
    let mut stream = watch(&mut on_a, "").await;
    let made = create_user(&mut b.admin().await, "elsewhere").await;
    let seen = loop {
        let event = next_event(&mut stream).await.unwrap().unwrap();
        if event.action == "CreateServiceUser" {
            break event;
        }
    };
    assert_eq!(seen.target_id, made.id);
}

/// On PostgreSQL: exchanges counted while the audit table refuses writes are kept and written
/// once it accepts them again, so a key in use never looks unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn exchanges_counted_during_an_audit_outage_are_written_after_it() {
    use sea_orm::ConnectionTrait;
    let Some(server) =
        Server::start_with(Backend::Postgres, &["--activity-flush-interval", "1s"]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "steady").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let db = server.database().await;
    db.execute_unprepared(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await
    .unwrap();
    for _ in 0..3 {
        server.token_for(&key.id, &secret).await.unwrap();
    }
    // Several flushes fail meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    db.execute_unprepared("DROP TRIGGER refuse ON audit_events")
        .await
        .unwrap();
    let filter = format!("action = ExchangeApiKey AND target_id = {}", key.id);
    let found = wait_for_events(&server, "", &filter, |e| counted(e) >= 3).await;
    assert_eq!(counted(&found), 3, "{found:?}");
}
