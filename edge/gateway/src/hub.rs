//! Hub routes: WebSocket upgrades handed to the hub Durable Object, and the
//! backend API that publishes into a hub over plain HTTP.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};

use edgegate_auth::Identity;
use edgegate_config::WebSocket;
use edgegate_durable_objects::hub::{
    MAX_MESSAGE_BYTES_HEADER, MESSAGES_PER_SECOND_HEADER, USER_ID_HEADER, USER_ROLES_HEADER,
};
use edgegate_router::RouteMatch;

use crate::cors::Cors;
use crate::gateway::Reject;
use crate::headers::{self, WEBSOCKET_UPGRADE};
use crate::platform::{FetchError, Platform};

/// Durable Object class of hubs (`Hub`).
pub const HUB_CLASS: &str = "hub";

/// Whether the request asks for a WebSocket: the `Upgrade` header where the
/// platform shows it, else the marker a host sets for guests that cannot see it.
fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(WEBSOCKET_UPGRADE)
        || request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Hands an authenticated upgrade to the hub the route names.
pub(crate) async fn connect<P: Platform>(
    platform: &P,
    request: Request<P::Body>,
    ws: &WebSocket,
    matched: &RouteMatch<'_>,
    identity: Option<&Identity>,
    cors: Option<&Cors>,
) -> Result<Response<P::Body>, Reject> {
    if !is_upgrade(&request) {
        // No `Upgrade` response header: WASI HTTP refuses it from guests.
        return Err(Reject::new(
            426,
            "upgrade_required",
            "this route takes WebSocket connections",
        ));
    }
    // Browsers send Origin on every WebSocket handshake; a page on another
    // origin must not ride the user's cookies into the hub.
    if let (Some(origin), Some(cors)) = (
        request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        cors,
    ) && !cors.allows_origin(origin)
    {
        return Err(Reject::new(
            403,
            "origin_refused",
            "this origin may not open WebSockets here",
        ));
    }
    let user = match identity {
        Some(i) => i.user.clone().or_else(|| i.consumer.clone()),
        None => None,
    };
    let user = match user {
        Some(u) => u,
        None => {
            let mut id = [0u8; 8];
            platform.fill_random(&mut id);
            format!("guest-{}", headers::hex(&id))
        }
    };
    let roles = identity.map(|i| i.roles.join(",")).unwrap_or_default();
    let hub = edgegate_router::expand(&ws.hub, &matched.params);

    let (mut parts, body) = request.into_parts();
    headers::strip_identity(&mut parts.headers);
    let h = &mut parts.headers;
    for (name, value) in [
        (USER_ID_HEADER, user),
        (USER_ROLES_HEADER, roles),
        (MAX_MESSAGE_BYTES_HEADER, ws.max_message_bytes.to_string()),
        (
            MESSAGES_PER_SECOND_HEADER,
            ws.messages_per_second.to_string(),
        ),
    ] {
        let value = HeaderValue::from_str(&value).map_err(|_| {
            Reject::new(400, "bad_identity", "identity is not a valid header value")
        })?;
        h.insert(name, value);
    }
    parts.uri = http::Uri::from_static("http://hub/connect");
    call(platform, &hub, Request::from_parts(parts, body)).await
}

/// The backend API of a hub: `POST` publishes, `GET` reads presence.
pub(crate) async fn backend<P: Platform>(
    platform: &P,
    request: Request<P::Body>,
    hub_name: &str,
    matched: &RouteMatch<'_>,
) -> Result<Response<P::Body>, Reject> {
    let path = match *request.method() {
        Method::POST => "http://hub/publish",
        Method::GET | Method::HEAD => "http://hub/presence",
        _ => {
            return Err(
                Reject::new(405, "method_not_allowed", "hubs take GET and POST")
                    .with(header::ALLOW, "GET, HEAD, POST"),
            );
        }
    };
    let hub = edgegate_router::expand(hub_name, &matched.params);
    let (mut parts, body) = request.into_parts();
    parts.uri = http::Uri::from_static(path);
    headers::strip_hop_by_hop(&mut parts.headers);
    call(platform, &hub, Request::from_parts(parts, body)).await
}

async fn call<P: Platform>(
    platform: &P,
    hub: &str,
    request: Request<P::Body>,
) -> Result<Response<P::Body>, Reject> {
    platform
        .durable_object(HUB_CLASS, hub, request)
        .await
        .map_err(|e| match e {
            FetchError::Timeout => {
                Reject::new(504, "hub_timeout", "the hub did not answer in time")
            }
            _ => Reject::new(503, "hub_unavailable", "the hub could not be reached"),
        })
}
