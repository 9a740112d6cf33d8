//! [`FilterLayer`].

use tower_layer::Layer;

use super::{FilterChain, Filters};

/// Wraps a service in [`Filters`] applying one compiled [`FilterChain`].
/// ```
/// use std::collections::HashMap;
/// use gatekit_core::filter::{FilterChain, FilterLayer};
/// use gatekit_core::route::{Filter, HeaderModifier};
/// use gatekit_core::{Backend, Body, BoxError};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // HTTPRoute `filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: ...}}]`
/// let filters = [Filter::RequestHeaderModifier(HeaderModifier::new().with_set("x-via", "gatekit"))];
/// let chain = FilterChain::compile(&filters, &HashMap::<String, Backend>::new()).unwrap();
/// let backend = tower::service_fn(|req: http::Request<Body>| async move {
///     let via = req.headers()["x-via"].to_str().unwrap().to_owned();
///     Ok::<_, BoxError>(http::Response::new(Body::from(via)))
/// });
/// let svc = FilterLayer::new(chain).layer(backend);
/// let rsp = svc.oneshot(http::Request::new(Body::empty())).await.unwrap();
/// let via = http_body_util::BodyExt::collect(rsp.into_body()).await.unwrap().to_bytes();
/// assert_eq!(via, "gatekit");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct FilterLayer {
    chain: FilterChain,
}

impl FilterLayer {
    /// A layer applying `chain`.
    pub fn new(chain: FilterChain) -> Self {
        Self { chain }
    }
}

impl<S> Layer<S> for FilterLayer {
    type Service = Filters<S>;

    fn layer(&self, inner: S) -> Filters<S> {
        Filters::new(inner, self.chain.clone())
    }
}
