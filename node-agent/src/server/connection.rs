//! One connection's life, whichever protocol carries it. A new connection has
//! `limits.headerReadTimeoutSeconds` to send its first request's headers, and an open one is
//! closed after `limits.idleTimeoutSeconds` with no request in flight: a client that sends
//! nothing, or half a handshake, does not hold a socket. On shutdown every connection starts
//! closing: an idle one at once, a busy one once its requests are answered (the drain). Closing
//! is graceful first (GOAWAY over HTTP/2, the end of keep-alive over HTTP/1.1); a peer that
//! does not then let go within [`CLOSE_GRACE`] of its last answer is dropped. A request is in flight from its headers until its response has
//! been sent ([`Activity::start`], [`Tracked`]).

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use idn_contract::config::Limits;
use tokio::sync::{Notify, watch};

/// How long a connection being closed while idle has to say goodbye (HTTP/2 sends GOAWAY and
/// waits for the answer to a ping) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a connection may wait for its first request, and between requests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    first_request: Duration,
    idle: Duration,
}

impl Timeouts {
    pub(super) fn new(limits: &Limits) -> Self {
        Timeouts {
            first_request: Duration::from_secs(limits.header_read_timeout_seconds),
            idle: Duration::from_secs(limits.idle_timeout_seconds),
        }
    }
}

/// The requests in flight on one connection.
#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    started: AtomicBool,
    changed: Notify,
}

impl Activity {
    /// Counts a request in flight until the returned guard drops.
    pub(super) fn start(self: &Arc<Self>) -> InFlight {
        self.started.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        InFlight(Arc::clone(self))
    }

    /// Resolves once no request has been in flight for `limit(any request started yet)`.
    async fn quiet_for(&self, limit: impl Fn(bool) -> Duration) {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the count is read, so a change in between is not missed.
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
            } else {
                let limit = limit(self.started.load(Ordering::Acquire));
                if tokio::time::timeout(limit, changed).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One request in flight on its connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request in flight until it has been sent.
pub(super) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(super) fn new(body: B, in_flight: InFlight) -> Self {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Drives `connection` to its end: closes it when it stays idle past `timeouts`, or once it is
/// idle after `shutdown` changes.
pub(super) async fn drive<C: GracefulConnection>(
    connection: C,
    activity: &Activity,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<()>,
) -> Result<(), C::Error> {
    let mut connection = pin!(connection);
    let mut closing = false;
    loop {
        let limit = |started: bool| match (closing, started) {
            (true, _) => CLOSE_GRACE,
            (false, true) => timeouts.idle,
            (false, false) => timeouts.first_request,
        };
        tokio::select! {
            ended = connection.as_mut() => return ended,
            () = activity.quiet_for(limit) => {
                if closing {
                    // The peer did not let go of a connection it was told to leave.
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
