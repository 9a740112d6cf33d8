//! [`TimeoutLayer`].

use std::time::Duration;

use tower_layer::Layer;

use super::Timeout;
use crate::ErrorKind;

/// Wraps a service in [`Timeout`]: a deadline (or none) and the error kind it raises.
/// ```
/// use std::time::Duration;
/// use gatekit_core::timeout::TimeoutLayer;
/// use gatekit_core::{BoxError, ErrorKind, classify};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let slow = tower::service_fn(|_req: ()| async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
///     Ok::<_, BoxError>("too late")
/// });
/// let svc = TimeoutLayer::request(Some(Duration::from_millis(10))).layer(slow);
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert_eq!(classify(&*err), ErrorKind::RequestTimeout); // answered as 504
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    duration: Option<Duration>,
    kind: ErrorKind,
}

impl TimeoutLayer {
    /// A whole-request timeout (HTTPRoute `timeouts.request`): on expiry the call fails
    /// with [`ErrorKind::RequestTimeout`]. `None` (or zero) sets no timeout.
    pub fn request(duration: Option<Duration>) -> Self {
        Self::new(duration, ErrorKind::RequestTimeout)
    }

    /// A per-attempt backend timeout (HTTPRoute `timeouts.backendRequest`): on expiry the
    /// call fails with [`ErrorKind::BackendRequestTimeout`]. `None` (or zero) sets no
    /// timeout.
    pub fn backend_request(duration: Option<Duration>) -> Self {
        Self::new(duration, ErrorKind::BackendRequestTimeout)
    }

    /// A timeout of `duration` failing with `kind` on expiry. `None` (or zero) sets no
    /// timeout.
    pub fn new(duration: Option<Duration>, kind: ErrorKind) -> Self {
        Self {
            duration: duration.filter(|d| !d.is_zero()),
            kind,
        }
    }

    /// The error kind raised on expiry.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The deadline, if any.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, *self)
    }
}
