//! The request pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};

use edgegate_auth::{ApiKeys, Identity, JwksFetcher, JwtError, JwtVerifier};
use edgegate_config::{AuthMode, Config, ConfigError, Route};
use edgegate_problem::Problem;
use edgegate_router::{Match, RouteMatch, Router};

use crate::access::{Line, Trace};
use crate::balance::{self, Balancer, Breaker};
use crate::cors::{Cors, Preflight};
use crate::headers;
use crate::hub;
use crate::platform::{ClientInfo, EdgeBody, FetchError, FetchOptions, Platform};
use crate::ratelimit::{self, CompiledPolicy, Outcome, Subject};

/// A gateway compiled from one configuration; cheap to keep for the life of
/// an instance and shared by all its requests.
pub struct Gateway {
    config: Config,
    router: Router,
    routes: Vec<CompiledRoute>,
    upstreams: Vec<CompiledUpstream>,
    policies: Vec<CompiledPolicy>,
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
    api_key_header: HeaderName,
    security_headers: Vec<(HeaderName, HeaderValue)>,
}

struct CompiledRoute {
    upstream: Option<usize>,
    policies: Vec<usize>,
    cors: Option<Cors>,
    timeout: Option<Duration>,
}

struct CompiledUpstream {
    targets: Vec<TargetUrl>,
    balancer: Balancer,
    timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    backoff: Duration,
}

struct TargetUrl {
    scheme: String,
    authority: String,
    base_path: String,
}

/// A refusal: the problem and any headers it needs (`WWW-Authenticate`, `Allow`).
pub(crate) struct Reject {
    problem: Problem,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Why authentication failed (metrics: JWT failures by reason).
    auth_failure: Option<&'static str>,
}

impl Reject {
    pub(crate) fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Reject {
            problem: Problem::new(status, code, detail),
            headers: Vec::new(),
            auth_failure: None,
        }
    }

    pub(crate) fn with(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

const MAX_JWKS_BYTES: usize = 1 << 20;

impl Gateway {
    /// Compiles a validated configuration whose secrets are resolved.
    pub fn new(config: Config) -> Result<Gateway, ConfigError> {
        let jwt = match &config.auth.jwt {
            Some(j) => Some(
                JwtVerifier::new(j)
                    .map_err(|e| ConfigError::new("auth.jwt.keys", e.to_string()))?,
            ),
            None => None,
        };
        let api_keys = if config.auth.api_keys.is_empty() {
            None
        } else {
            Some(
                ApiKeys::new(&config.auth.api_keys)
                    .map_err(|e| ConfigError::new("auth.api_keys", e.to_string()))?,
            )
        };
        let api_key_header = HeaderName::from_bytes(config.auth.api_key_header.as_bytes())
            .map_err(|_| ConfigError::new("auth.api_key_header", "not a header name"))?;
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let targets = u
                    .targets
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        parse_target(&t.url).ok_or_else(|| {
                            ConfigError::new(
                                format!("upstreams[{i}].targets[{j}].url"),
                                "not a URL",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(CompiledUpstream {
                    targets,
                    balancer: Balancer::new(
                        u.targets.iter().map(|t| t.weight),
                        Breaker {
                            max_failures: u.max_failures,
                            ejection_ms: u.ejection_ms,
                        },
                    ),
                    timeout: Duration::from_millis(u.timeout_ms),
                    connect_timeout: Duration::from_millis(u.connect_timeout_ms),
                    retries: u.retries,
                    backoff: Duration::from_millis(u.retry_backoff_ms),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let policies = config
            .rate_limits
            .iter()
            .enumerate()
            .map(|(i, p)| {
                CompiledPolicy::new(p, config.redis.as_ref())
                    .map_err(|e| ConfigError::new(format!("rate_limits[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let routes = config
            .routes
            .iter()
            .map(|r| CompiledRoute {
                policies: r
                    .rate_limits
                    .iter()
                    .filter_map(|name| config.rate_limits.iter().position(|p| &p.name == name))
                    .collect(),
                upstream: r
                    .upstream
                    .as_ref()
                    .and_then(|name| config.upstreams.iter().position(|u| &u.name == name)),
                cors: r
                    .cors
                    .as_ref()
                    .or(config.cors.as_ref())
                    .map(|c| Cors::new(c, &r.match_.methods)),
                timeout: r.timeout_ms.map(Duration::from_millis),
            })
            .collect();
        let security_headers = config
            .gateway
            .security_headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        Ok(Gateway {
            router: Router::new(&config.routes),
            routes,
            upstreams,
            policies,
            jwt,
            api_keys,
            api_key_header,
            security_headers,
            config,
        })
    }

    /// The configuration this gateway runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one request end to end; never fails: errors become
    /// problem+json responses.
    pub async fn handle<P: Platform>(
        &self,
        platform: &P,
        request: Request<P::Body>,
        client: &ClientInfo,
    ) -> Response<P::Body> {
        let request_id = match request
            .headers()
            .get(headers::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| headers::valid_request_id(v))
        {
            Some(id) => id.to_string(),
            None => {
                let mut id = [0u8; 16];
                platform.fill_random(&mut id);
                headers::hex(&id)
            }
        };
        let started = platform.monotonic_ns();
        let logged = (self.config.gateway.access_log || platform.wants_access_records())
            .then(|| (request.method().clone(), request.uri().path().to_string()));
        // Every request gets its span (a 401 or a 429 is worth tracing too);
        // one random draw covers both ids.
        let mut ids = [0u8; 24];
        platform.fill_random(&mut ids);
        let (span, fresh_trace) = ids.split_at(8);
        let mut trace = Trace {
            context: Some(headers::TraceContext::new(
                header_str(request.headers(), "traceparent"),
                span.try_into().unwrap_or_default(),
                fresh_trace.try_into().unwrap_or_default(),
            )),
            ..Trace::default()
        };
        let mut response = match self
            .serve(platform, request, client, &request_id, &mut trace)
            .await
        {
            Ok(r) => r,
            Err(reject) => {
                trace.error = Some(reject.problem.code);
                trace.auth_failure = reject.auth_failure;
                problem_response(reject, &request_id)
            }
        };
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert(headers::REQUEST_ID, v);
        }
        headers::add_security_headers(h, &self.security_headers);
        if let Some((method, path)) = logged {
            let route = trace.route.map(|i| &self.config.routes[i]);
            let upstream = trace.upstream.map(|i| &self.config.upstreams[i]);
            let target = upstream
                .zip(trace.target)
                .map(|(u, t)| u.targets[t].url.as_str());
            platform.log(&trace.render(Line {
                time_ms: platform.now_unix_ms(),
                request_id: &request_id,
                method: method.as_str(),
                path: &path,
                status: response.status().as_u16(),
                route: route.map(|r| r.name.as_str()),
                upstream: upstream.map(|u| u.name.as_str()),
                target,
                total_ns: platform.monotonic_ns().saturating_sub(started),
                client_ip: client.ip.as_deref(),
            }));
        }
        response
    }

    /// Answers an error the gateway itself produced, in the same shape as
    /// every other (used by adapters for failures outside the pipeline).
    pub fn problem<B: EdgeBody>(
        status: u16,
        code: &'static str,
        detail: &str,
        request_id: &str,
    ) -> Response<B> {
        problem_response(Reject::new(status, code, detail), request_id)
    }

    async fn serve<P: Platform>(
        &self,
        platform: &P,
        request: Request<P::Body>,
        client: &ClientInfo,
        request_id: &str,
        trace: &mut Trace,
    ) -> Result<Response<P::Body>, Reject> {
        let path = edgegate_router::normalize_path(request.uri().path())
            .map_err(|e| Reject::new(400, "bad_path", e.to_string()))?
            .into_owned();
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| header_str(request.headers(), header::HOST).map(str::to_string));
        let origin = header_str(request.headers(), header::ORIGIN).map(str::to_string);
        let preflight_method = (request.method() == Method::OPTIONS)
            .then(|| header_str(request.headers(), header::ACCESS_CONTROL_REQUEST_METHOD))
            .flatten()
            .filter(|_| origin.is_some())
            .map(str::to_string);

        // A preflight is routed by the method it asks about.
        let lookup = preflight_method
            .as_deref()
            .unwrap_or(request.method().as_str());
        let (index, matched) = match self.router.find(host.as_deref(), lookup, &path) {
            Match::Found(m) => (m.index, m),
            Match::NotFound => {
                return Err(Reject::new(
                    404,
                    "route_not_found",
                    format!("no route for {} {}", request.method(), path),
                ));
            }
            Match::MethodNotAllowed { allowed } => {
                let allow: Vec<String> = allowed.iter().map(|m| m.to_string()).collect();
                return Err(Reject::new(
                    405,
                    "method_not_allowed",
                    format!("{lookup} is not allowed here"),
                )
                .with(header::ALLOW, &allow.join(", ")));
            }
        };
        let route = &self.config.routes[index];
        let compiled = &self.routes[index];
        trace.route = Some(index);

        if let (Some(method), Some(origin)) = (&preflight_method, &origin) {
            let Some(cors) = &compiled.cors else {
                return Err(Reject::new(
                    403,
                    "cors_refused",
                    "this route does not allow cross-origin requests",
                ));
            };
            let asked = header_str(request.headers(), header::ACCESS_CONTROL_REQUEST_HEADERS);
            return match cors.preflight(origin, method, asked) {
                Preflight::Allowed(h) => {
                    let mut r = Response::new(P::Body::empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    *r.headers_mut() = h;
                    Ok(r)
                }
                Preflight::Refused(why) => Err(Reject::new(403, "cors_refused", why)),
            };
        }

        let mut response = self
            .forward(
                platform, request, client, request_id, route, compiled, &matched, &path, trace,
            )
            .await
            .unwrap_or_else(|reject| {
                trace.error = Some(reject.problem.code);
                trace.auth_failure = reject.auth_failure;
                problem_response(reject, request_id)
            });
        if let Some(cors) = &compiled.cors {
            cors.apply(origin.as_deref(), response.headers_mut());
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward<P: Platform>(
        &self,
        platform: &P,
        request: Request<P::Body>,
        client: &ClientInfo,
        request_id: &str,
        route: &Route,
        compiled: &CompiledRoute,
        matched: &RouteMatch<'_>,
        path: &str,
        trace: &mut Trace,
    ) -> Result<Response<P::Body>, Reject> {
        let declared_length = header_str(request.headers(), header::CONTENT_LENGTH)
            .map(|v| v.trim().parse::<u64>())
            .transpose()
            .map_err(|_| {
                Reject::new(400, "bad_content_length", "content-length is not a number")
            })?;
        if declared_length.is_some_and(|n| n > route.max_body_bytes) {
            return Err(too_large(route.max_body_bytes));
        }

        if (route.websocket.is_some() || route.hub.is_some()) && !platform.has_durable_objects() {
            return Err(Reject::new(
                501,
                "hubs_unavailable",
                "WebSocket hubs run on Durable Objects: serve this route with `edgegate serve` or on Cloudflare Workers",
            ));
        }

        let identity = self.authenticate(platform, &request, route.auth).await?;
        if let Some(i) = &identity {
            trace.user.clone_from(&i.user);
            trace.consumer.clone_from(&i.consumer);
        }
        if let Some(identity) = &identity {
            if !identity.has_any_role(&route.roles) {
                return Err(Reject::new(
                    403,
                    "forbidden",
                    format!("needs one of the roles: {}", route.roles.join(", ")),
                ));
            }
            if !identity.has_all_scopes(&route.scopes) {
                return Err(Reject::new(
                    403,
                    "insufficient_scope",
                    format!("needs the scopes: {}", route.scopes.join(" ")),
                )
                .with(
                    header::WWW_AUTHENTICATE,
                    &format!(
                        "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                        route.scopes.join(" ")
                    ),
                ));
            }
        }

        let limited = if compiled.policies.is_empty() {
            HeaderMap::new()
        } else {
            let policies: Vec<&CompiledPolicy> = compiled
                .policies
                .iter()
                .map(|&i| &self.policies[i])
                .collect();
            let subject = Subject {
                ip: client.ip.as_deref(),
                identity: identity.as_ref(),
                headers: request.headers(),
            };
            match ratelimit::check(platform, &policies, &subject).await {
                Outcome::Admitted(h) => {
                    trace.rate_limit = Some("admitted");
                    h
                }
                Outcome::Refused(h) => {
                    trace.rate_limit = Some("refused");
                    let mut reject = Reject::new(429, "rate_limited", "too many requests");
                    reject
                        .headers
                        .extend(h.iter().map(|(k, v)| (k.clone(), v.clone())));
                    return Err(reject);
                }
                Outcome::Unavailable(why) => {
                    trace.rate_limit = Some("unavailable");
                    return Err(Reject::new(503, "rate_limiter_unavailable", why));
                }
            }
        };

        if let Some(ws) = &route.websocket {
            return hub::connect(
                platform,
                request,
                ws,
                matched,
                identity.as_ref(),
                compiled.cors.as_ref(),
            )
            .await;
        }
        if let Some(hub_name) = &route.hub {
            return hub::backend(platform, request, hub_name, matched).await;
        }

        let upstream_index = compiled
            .upstream
            .ok_or_else(|| Reject::new(500, "no_upstream", "route has no upstream"))?;
        let upstream = &self.upstreams[upstream_index];
        trace.upstream = Some(upstream_index);
        let upstream_path = edgegate_router::upstream_path(route, matched, path);
        let query = request.uri().query().map(|q| self.strip_token_param(q));

        let (parts, body) = request.into_parts();
        let original_host = parts.uri.authority().map(|a| a.to_string());
        let mut h = parts.headers;
        headers::strip_hop_by_hop(&mut h);
        headers::strip_identity(&mut h);
        h.remove(header::HOST);
        // Credentials the gateway consumed are not the upstream's business.
        h.remove(&self.api_key_header);
        if let Some(identity) = &identity {
            headers::set_identity(&mut h, identity);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(headers::REQUEST_ID, v);
        }
        if let Some(context) = &trace.context
            && let Ok(v) = HeaderValue::from_str(&context.header())
        {
            h.insert("traceparent", v);
        }
        headers::set_forwarded(
            &mut h,
            client.ip.as_deref(),
            client.scheme.as_deref().unwrap_or("http"),
            original_host.as_deref(),
            self.config.gateway.trust_forwarded_headers,
        );

        let exceeded = Arc::new(AtomicBool::new(false));
        let has_body = declared_length.is_some_and(|n| n > 0)
            || (declared_length.is_none()
                && !matches!(
                    parts.method,
                    Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
                ));
        // A declared length is enforced by the HTTP layer below; only a body
        // of unknown length needs counting (and loses no fast path otherwise).
        let body = if declared_length.is_none() {
            body.limit(route.max_body_bytes, exceeded.clone())
        } else {
            body
        };
        let mut body = Some(body);
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let attempts = if idempotent && !has_body {
            upstream.retries + 1
        } else {
            1
        };
        let options = FetchOptions {
            connect_timeout: upstream.connect_timeout,
            timeout: compiled.timeout.unwrap_or(upstream.timeout),
        };

        let unhealthy = balance::unhealthy_targets(
            client.unhealthy_targets.as_deref(),
            &self.config.upstreams[upstream_index].name,
        );
        let mut tried = Vec::new();
        let mut last_error = FetchError::Other("no attempt".into());
        for attempt in 0..attempts {
            if attempt > 0 {
                let backoff = upstream.backoff.saturating_mul(1 << (attempt - 1).min(10));
                platform.sleep(backoff).await;
            }
            let now_ms = platform.now_unix_ms();
            let target_index = upstream.balancer.pick(&tried, &unhealthy, now_ms, || {
                let mut seed = [0u8; 8];
                platform.fill_random(&mut seed);
                u64::from_le_bytes(seed)
            });
            tried.push(target_index);
            trace.target = Some(target_index);
            trace.attempts += 1;
            let target = &upstream.targets[target_index];
            let uri = format!(
                "{}://{}{}{}{}",
                target.scheme,
                target.authority,
                join_paths(&target.base_path, &upstream_path),
                if query.as_deref().is_some_and(|q| !q.is_empty()) {
                    "?"
                } else {
                    ""
                },
                query.as_deref().unwrap_or("")
            );
            let uri: Uri = uri
                .parse()
                .map_err(|_| Reject::new(400, "bad_path", "the upstream URI would be invalid"))?;
            let mut upstream_request = Request::new(body.take().unwrap_or_else(P::Body::empty));
            *upstream_request.method_mut() = parts.method.clone();
            *upstream_request.uri_mut() = uri;
            *upstream_request.headers_mut() = h.clone();
            let sent = platform.monotonic_ns();
            let result = platform.fetch(upstream_request, options).await;
            trace.upstream_ns += platform.monotonic_ns().saturating_sub(sent);
            match result {
                Ok(mut response) => {
                    let failed = matches!(response.status().as_u16(), 502..=504);
                    upstream.balancer.report(target_index, !failed, now_ms);
                    headers::strip_hop_by_hop(response.headers_mut());
                    response.headers_mut().extend(limited);
                    return Ok(response);
                }
                Err(e) => {
                    if exceeded.load(Ordering::Relaxed) {
                        return Err(too_large(route.max_body_bytes));
                    }
                    let retry = e.retryable();
                    if retry {
                        upstream.balancer.report(target_index, false, now_ms);
                    }
                    last_error = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(match last_error {
            FetchError::Timeout => Reject::new(
                504,
                "upstream_timeout",
                "the upstream did not answer in time",
            ),
            FetchError::Connect(_) | FetchError::Reset(_) => Reject::new(
                502,
                "upstream_unavailable",
                "the upstream could not be reached",
            ),
            FetchError::Other(_) => Reject::new(502, "upstream_error", "the upstream call failed"),
        })
    }

    async fn authenticate<P: Platform>(
        &self,
        platform: &P,
        request: &Request<P::Body>,
        mode: AuthMode,
    ) -> Result<Option<Identity>, Reject> {
        if mode == AuthMode::None {
            return Ok(None);
        }
        let token = self.find_token(request);
        let api_key = header_str(request.headers(), &self.api_key_header);
        let use_jwt = match mode {
            AuthMode::Jwt => true,
            AuthMode::ApiKey => false,
            AuthMode::Any => token.is_some() || api_key.is_none(),
            AuthMode::None => unreachable!("handled above"),
        };
        if use_jwt {
            let Some(verifier) = &self.jwt else {
                return Err(unauthorized(
                    mode,
                    "no_keys",
                    None,
                    "no JWT keys are configured",
                ));
            };
            let Some(token) = token else {
                return Err(unauthorized(
                    mode,
                    "missing_token",
                    None,
                    "a bearer token is required",
                ));
            };
            let now = (platform.now_unix_ms() / 1000) as i64;
            return verifier
                .verify(&token, now, &PlatformJwks(platform))
                .await
                .map(Some)
                .map_err(|e| unauthorized(mode, e.reason(), Some(&e), &e.description()));
        }
        let Some(keys) = &self.api_keys else {
            return Err(unauthorized(
                mode,
                "no_keys",
                None,
                "no API keys are configured",
            ));
        };
        let Some(key) = api_key else {
            return Err(unauthorized(
                mode,
                "missing_api_key",
                None,
                "an API key is required",
            ));
        };
        keys.authenticate(key)
            .map(Some)
            .ok_or_else(|| unauthorized(mode, "invalid_api_key", None, "the API key is not valid"))
    }

    /// A bearer token from `Authorization`, else the configured cookie or
    /// query parameter (browsers cannot set headers on WebSocket upgrades).
    fn find_token<B>(&self, request: &Request<B>) -> Option<String> {
        if let Some(v) = header_str(request.headers(), header::AUTHORIZATION) {
            let (scheme, token) = v.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string());
        }
        let jwt = self.config.auth.jwt.as_ref()?;
        if let Some(cookie_name) = &jwt.cookie {
            for v in request.headers().get_all(header::COOKIE) {
                let Ok(v) = v.to_str() else { continue };
                for pair in v.split(';') {
                    if let Some((k, val)) = pair.trim().split_once('=')
                        && k == cookie_name
                    {
                        return Some(val.to_string());
                    }
                }
            }
        }
        let param = jwt.query_param.as_ref()?;
        request.uri().query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == param).then(|| v.to_string())
        })
    }

    /// The query without the token parameter, so the token does not travel on.
    fn strip_token_param(&self, query: &str) -> String {
        let Some(param) = self
            .config
            .auth
            .jwt
            .as_ref()
            .and_then(|j| j.query_param.as_ref())
        else {
            return query.to_string();
        };
        query
            .split('&')
            .filter(|pair| pair.split('=').next() != Some(param.as_str()))
            .collect::<Vec<_>>()
            .join("&")
    }
}

struct PlatformJwks<'a, P>(&'a P);

impl<P: Platform> JwksFetcher for PlatformJwks<'_, P> {
    async fn fetch_jwks(&self, url: &str) -> Result<Vec<u8>, String> {
        let uri: Uri = url.parse().map_err(|_| "invalid JWKS URL".to_string())?;
        let mut request = Request::new(P::Body::empty());
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let options = FetchOptions {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        };
        let response = self
            .0
            .fetch(request, options)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("JWKS endpoint answered {}", response.status()));
        }
        Ok(response
            .into_body()
            .read_to_end(MAX_JWKS_BYTES)
            .await?
            .to_vec())
    }
}

/// A 401 (503 when keys are unavailable); `reason` labels the failure in
/// the access record.
fn unauthorized(
    mode: AuthMode,
    reason: &'static str,
    error: Option<&JwtError>,
    detail: &str,
) -> Reject {
    let mut reject = challenge(mode, error, detail);
    reject.auth_failure = Some(reason);
    reject
}

fn challenge(mode: AuthMode, error: Option<&JwtError>, detail: &str) -> Reject {
    if matches!(error, Some(JwtError::KeysUnavailable)) {
        return Reject::new(503, "jwks_unavailable", "signing keys are unavailable");
    }
    let (code, challenge) = match (mode, error) {
        (AuthMode::ApiKey, _) => ("unauthorized", "ApiKey realm=\"edgegate\"".to_string()),
        (_, Some(e)) => (
            "invalid_token",
            format!(
                "Bearer realm=\"edgegate\", error=\"invalid_token\", error_description=\"{}\"",
                e.description()
            ),
        ),
        (_, None) => ("unauthorized", "Bearer realm=\"edgegate\"".to_string()),
    };
    Reject::new(401, code, detail).with(header::WWW_AUTHENTICATE, &challenge)
}

fn too_large(max: u64) -> Reject {
    Reject::new(
        413,
        "body_too_large",
        format!("request body is larger than {max} bytes"),
    )
}

fn problem_response<B: EdgeBody>(reject: Reject, request_id: &str) -> Response<B> {
    let body = reject.problem.to_json(request_id);
    let mut response = Response::new(B::from_bytes(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(reject.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.extend(reject.headers);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(edgegate_problem::CONTENT_TYPE),
    );
    response
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_target(url: &str) -> Option<TargetUrl> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Some(TargetUrl {
        scheme: scheme.to_string(),
        authority: authority.to_string(),
        base_path: path.trim_end_matches('/').to_string(),
    })
}

fn join_paths(base: &str, path: &str) -> String {
    if base.is_empty() {
        path.to_string()
    } else if path == "/" {
        format!("{base}/")
    } else {
        format!("{base}{path}")
    }
}

#[cfg(test)]
mod tests;
