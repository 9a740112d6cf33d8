//! [`NormalizePathLayer`].

use tower_layer::Layer;

use super::{NormalizePath, PathPolicy};

/// Wraps a service in [`NormalizePath`] with one [`PathPolicy`].
/// ```
/// use gatekit_core::path::NormalizePathLayer;
/// use gatekit_core::{Body, BoxError};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The inner service sees the normalised path.
/// let echo = tower::service_fn(|req: http::Request<Body>| async move {
///     Ok::<_, BoxError>(http::Response::new(Body::from(req.uri().path().to_owned())))
/// });
/// let svc = NormalizePathLayer::default().layer(echo);
/// let req = |path| {
///     let req = http::Request::get(path).header("host", "example.com");
///     req.body(Body::empty()).unwrap()
/// };
/// let rsp = svc.clone().oneshot(req("/a/./b/../c")).await.unwrap();
/// let path = http_body_util::BodyExt::collect(rsp.into_body()).await.unwrap().to_bytes();
/// assert_eq!(path, "/a/c");
/// // A path that cannot be normalised is refused before the inner service.
/// let rsp = svc.oneshot(req("/a%zz")).await.unwrap();
/// assert_eq!(rsp.status(), http::StatusCode::BAD_REQUEST);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NormalizePathLayer {
    policy: PathPolicy,
}

impl NormalizePathLayer {
    /// A layer applying `policy`.
    pub const fn new(policy: PathPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for NormalizePathLayer {
    type Service = NormalizePath<S>;

    fn layer(&self, inner: S) -> NormalizePath<S> {
        NormalizePath::new(inner, self.policy)
    }
}
