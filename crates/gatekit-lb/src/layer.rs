//! [`UpstreamLayer`]: builds an [`Upstream`] around an endpoint-service factory.

use crate::config::UpstreamConfig;
use crate::upstream::{NewEndpoint, Upstream};

/// A [`Layer`](tower_layer::Layer) that wraps a [`NewEndpoint`] factory (for example a
/// closure making an HTTP client per endpoint) in an empty [`Upstream`] balancing by its
/// configuration. Feed the upstream with changes afterwards.
///
/// ```
/// use gatekit_core::{Body, BoxError, Endpoint};
/// use gatekit_lb::{Algorithm, UpstreamConfig, UpstreamLayer};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // One service per endpoint; here it answers with the endpoint's address.
/// let new_endpoint = |ep: &Endpoint| {
///     let addr = ep.addr();
///     tower::service_fn(move |_req: http::Request<Body>| async move {
///         Ok::<_, BoxError>(http::Response::new(Body::from(addr.to_string())))
///     })
/// };
/// let upstream = UpstreamLayer::new(UpstreamConfig::new(Algorithm::RoundRobin))
///     .layer(new_endpoint)
///     .with_endpoints(["127.0.0.1:8001".parse::<std::net::SocketAddr>().unwrap()]);
/// let rsp = upstream.oneshot(http::Request::new(Body::empty())).await.unwrap();
/// let body = http_body_util::BodyExt::collect(rsp.into_body()).await.unwrap().to_bytes();
/// assert_eq!(body, "127.0.0.1:8001");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct UpstreamLayer {
    config: UpstreamConfig,
}

impl UpstreamLayer {
    /// A layer building upstreams with `config`.
    pub fn new(config: UpstreamConfig) -> Self {
        Self { config }
    }
}

impl<N> tower_layer::Layer<N> for UpstreamLayer
where
    N: NewEndpoint,
    N::Service: Send + Sync + 'static,
{
    type Service = Upstream<N::Service>;

    fn layer(&self, new_endpoint: N) -> Self::Service {
        Upstream::new(self.config.clone(), new_endpoint)
    }
}
