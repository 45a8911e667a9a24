//! The rest of a body that nobody reads: read and thrown away, within
//! bounds, so that the peer can finish writing it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Most bytes of a client's request body discarded after the edge
/// component stopped reading it: enough for uploads somewhat over a
/// route's `max_body_bytes`. A larger declared rest closes the connection.
const CLIENT_REST_MAX: usize = 4 * 1024 * 1024;
/// How long a client gets to send that rest.
const CLIENT_REST_TIME: Duration = Duration::from_secs(10);

/// Reads `body` to its end and discards it, giving up after `max_bytes`
/// or `max_time`.
pub async fn discard<B>(mut body: B, max_bytes: usize, max_time: Duration)
where
    B: Body<Data = Bytes> + Unpin,
{
    let drain = async {
        let mut left = max_bytes;
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, Bytes::len);
            match left.checked_sub(len) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    };
    let _ = tokio::time::timeout(max_time, drain).await;
}

/// A client's request body as the edge component gets it.
///
/// The component often answers before reading it all (a 413 past
/// `max_body_bytes`, a 401) while the client is still sending. hyper then
/// closes the connection once the answer is out, and the client gets a
/// broken pipe or a reset instead of the answer. So when the component lets
/// go of an unfinished body, its rest is read and discarded (at most
/// [`CLIENT_REST_MAX`] bytes within [`CLIENT_REST_TIME`]), and the
/// connection stays open for the next request, as with nginx.
///
/// Not for `expect: 100-continue`: reading would invite the client to send
/// a body that is no longer wanted, while it would not send it otherwise.
pub struct ClientBody {
    body: Option<Incoming>,
    discard_rest: bool,
}

impl ClientBody {
    /// The request with its body wrapped.
    pub fn wrap(request: Request<Incoming>) -> Request<ClientBody> {
        let discard_rest = !request.headers().contains_key(header::EXPECT);
        request.map(|body| ClientBody {
            body: Some(body),
            discard_rest,
        })
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        if frame.is_none() {
            self.body = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let Some(rest) = self.body.take().filter(|_| self.discard_rest) else {
            return;
        };
        // A declared rest beyond the budget would not be read anyway:
        // closing at once is cheaper.
        if rest.is_end_stream() || rest.size_hint().lower() > CLIENT_REST_MAX as u64 {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(rest, CLIENT_REST_MAX, CLIENT_REST_TIME));
        }
    }
}
