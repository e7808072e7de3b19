//! The OAuth 2.0 face: `POST /oauth2/token` (client credentials, RFC 6749 §4.4: the key ID is
//! the `client_id`, its secret the `client_secret`) minting exactly what `ExchangeApiKey` mints
//! through the same domain call, and the RFC 8414 metadata that advertises it. Translation only:
//! every rule is the exchange's.

use crate::domain::exchange::ExchangeRequest;
use crate::error::Error;
use crate::http::HttpState;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 8 * 1024;

/// The peer of an HTTP connection, put in each request's extensions by the server.
#[derive(Clone, Copy, Debug)]
pub struct ClientPeer(pub SocketAddr);

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut response = (
        status,
        no_store(),
        Json(serde_json::json!({"error": code, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tokenmint\""),
        );
    }
    response
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// The answer to a failed exchange.
fn exchange_error(error: &Error) -> Response {
    let description = error.to_string();
    let mut response = match error {
        Error::InvalidArgument(violations) if violations.iter().any(|v| v.field == "audience") => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_target", &description)
        }
        Error::InvalidArgument(violations) if violations.iter().any(|v| v.field == "scope") => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &description)
        }
        Error::Throttled(_) => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            &description,
        ),
        other => {
            let (status, code) = crate::http::oauth2_error(other);
            oauth_error(status, code, &description)
        }
    };
    if let Error::Throttled(retry) = error {
        let seconds = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// The request's form body, or the error answer: a content type other than a form, a header
/// given twice, a body declared or found larger than [`MAX_FORM_BYTES`], or one that does not
/// arrive within `deadline` (so a client trickling its body cannot hold a connection).
async fn read_form(
    headers: &HeaderMap,
    body: Body,
    deadline: Duration,
) -> Result<Vec<(String, String)>, Response> {
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if headers.get_all(&name).iter().count() > 1 {
            return Err(invalid_request(&format!(
                "the {name} header is given twice"
            )));
        }
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let too_large = || {
        oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the form is larger than 8 KiB",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(too_large());
    }
    let body = match tokio::time::timeout(deadline, to_bytes(body, MAX_FORM_BYTES)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return Err(too_large()),
        Err(_) => {
            return Err(oauth_error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the body did not arrive in time",
            ));
        }
    };
    parameters(&body).map_err(|description| invalid_request(&description))
}

/// A header's value after a case-insensitive authentication `scheme` (RFC 7235).
fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// The form's parameters; `Err` names a repeated one.
fn parameters(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if seen.iter().any(|(n, _)| *n == name) {
            return Err(format!("the parameter {name:.40} is repeated"));
        }
        seen.push((name.into_owned(), value.into_owned()));
    }
    Ok(seen)
}

/// `client_id` and `client_secret` from an HTTP Basic header (RFC 6749 §2.3.1: each
/// form-urlencoded, then joined by a colon).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = credentials(value, "Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<HttpState>,
    peer: Option<Extension<ClientPeer>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if uri
        .query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(n, _)| n == "client_secret"))
    {
        return invalid_request(
            "credentials must not be sent in the URL: use HTTP Basic or the form body",
        );
    }
    let form = match read_form(&headers, body, state.body_deadline).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        None => return invalid_request("grant_type is required"),
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the client_credentials grant is supported",
            );
        }
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().ok().and_then(basic_credentials));
    let (client_id, client_secret) = match (basic, field("client_id"), field("client_secret")) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return invalid_request("send the credentials once: HTTP Basic or the form, not both");
        }
        (Some(None), _, _) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "the Authorization header is not valid HTTP Basic credentials",
            );
        }
        (Some(Some(credentials)), None, None) => credentials,
        (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
        (None, _, _) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client_id and client_secret are required (HTTP Basic or form)",
            );
        }
    };
    let audience = match (field("audience"), field("resource")) {
        (Some(a), Some(r)) if a != r => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "audience and resource name different targets",
            );
        }
        (a, r) => a.or(r).unwrap_or_default().to_owned(),
    };
    let peer = crate::listener::client_address(
        peer.map(|Extension(ClientPeer(addr))| addr),
        headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().ok()),
        &state.trusted_proxies,
    );
    let key_id = client_id.clone();
    let result = state
        .app
        .exchange_api_key(ExchangeRequest {
            key_id: client_id,
            secret: client_secret,
            audience,
            scope: field("scope").unwrap_or_default().to_owned(),
            requested_ttl: None::<Duration>,
            peer,
        })
        .await;
    crate::metrics::exchange(
        "http",
        result
            .as_ref()
            .map_or_else(crate::grpc::status::code_name, |_| "OK"),
    );
    match result {
        Ok(issued) => (
            StatusCode::OK,
            no_store(),
            Json(serde_json::json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            })),
        )
            .into_response(),
        Err(error) => {
            state.app.activity.record_failure(
                "ExchangeApiKey",
                &key_id,
                peer,
                crate::grpc::status::code_name(&error),
                state.app.now(),
            );
            exchange_error(&error)
        }
    }
}

/// `POST /oauth2/introspect` (RFC 7662): the caller authenticates with a bearer token of an
/// active principal, as for the gRPC call; the answer is the gRPC call's.
pub async fn introspect(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_form(&headers, body, state.body_deadline).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let Some(token) = form.iter().find(|(n, _)| n == "token").map(|(_, v)| v) else {
        return invalid_request("token is required");
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| credentials(v, "Bearer"));
    let caller = match state.app.authenticate(bearer).await {
        Ok(caller) => caller,
        Err(_) => {
            // RFC 6750: a bad bearer token is `invalid_token`.
            let mut response = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a bearer token of an active principal is required",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tokenmint\""),
            );
            return response;
        }
    };
    let answer = match state.app.introspect_token(&caller, token).await {
        Ok(Some(claims)) => serde_json::json!({
            "active": true,
            "token_type": "Bearer",
            "sub": claims.sub,
            "client_id": claims.client_id,
            "organization_id": claims.organization_id,
            "scope": claims.scope,
            "iss": claims.iss,
            "aud": claims.aud,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
        }),
        // RFC 7662: an inactive token gets `active: false` and nothing else.
        Ok(None) => serde_json::json!({"active": false}),
        Err(error) => return exchange_error(&error),
    };
    (StatusCode::OK, no_store(), Json(answer)).into_response()
}

/// RFC 8414 authorization server metadata: only what exists.
pub fn metadata(issuer: &str) -> serde_json::Value {
    let base = issuer.trim_end_matches('/');
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}/oauth2/token"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "scopes_supported": ["viewer", "admin", "owner", "superuser"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ak_1:a%2Bb%3Ac")
        );
        assert_eq!(
            basic_credentials(&header),
            Some(("ak_1".to_owned(), "a+b:c".to_owned()))
        );
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Bearer x"), None);
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        assert!(parameters(b"grant_type=a&grant_type=b").is_err());
        assert_eq!(parameters(b"a=1&b=2").map(|p| p.len()), Ok(2));
    }
}
