//! Links the edge component against WASI and `wasi:http`, once.

use wasmtime::StoreContextMut;
use wasmtime::component::{Component, Linker, Resource};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{self, ErrorCode};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpView};

use crate::pool::HostState;

/// The component is not a usable `wasi:http/proxy` component.
#[derive(Debug, thiserror::Error)]
#[error("the component cannot serve HTTP (needs the wasi:http/proxy world): {0}")]
pub struct LinkError(String);

/// Links `component` and checks that it exports
/// `wasi:http/incoming-handler`; instances are created from the result.
pub fn proxy_pre(component: &Component) -> Result<ProxyPre<HostState>, LinkError> {
    let failed = |e: wasmtime::Error| LinkError(format!("{e:#}"));
    let mut linker = Linker::new(component.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(failed)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(failed)?;
    // Replace `outgoing-handler.handle` with the one below.
    linker.allow_shadowing(true);
    linker
        .instance(OUTGOING_HANDLER)
        .and_then(|mut instance| instance.func_wrap("handle", outgoing_handle))
        .map_err(failed)?;
    linker.allow_shadowing(false);
    let pre = linker.instantiate_pre(component).map_err(failed)?;
    ProxyPre::new(pre).map_err(failed)
}

/// The interface as wasmtime-wasi-http 48 names it (guests importing older
/// 0.2.x versions link against it too).
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

type HandleResult = Result<Resource<HostFutureIncomingResponse>, ErrorCode>;

/// `wasi:http/outgoing-handler.handle` as wasmtime-wasi-http implements it,
/// plus the release of the `request-options` the guest hands over: the
/// library reads but never deletes that owned resource, so a reused instance
/// would accumulate one table entry per outgoing request.
fn outgoing_handle(
    mut store: StoreContextMut<'_, HostState>,
    (request, options): (
        Resource<HostOutgoingRequest>,
        Option<Resource<RequestOptions>>,
    ),
) -> wasmtime::Result<(HandleResult,)> {
    let mut http = store.data_mut().http();
    let owned = options
        .as_ref()
        .map(|o| Resource::<RequestOptions>::new_own(o.rep()));
    let result = outgoing_handler::Host::handle(&mut http, request, options);
    if let Some(options) = owned {
        // Already gone is fine: a later library version may delete it.
        let _ = http.table.delete(options);
    }
    Ok((match result {
        Ok(response) => Ok(response),
        Err(e) => Err(types::Host::convert_error_code(&mut http, e)?),
    },))
}
