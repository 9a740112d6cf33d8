//! Load shedding: at most so many requests of a rule in flight, and a 503 rather than a
//! queue beyond that.
//!
//! # Algorithm
//!
//! An [`InFlightLimit`] is a counter and a maximum. A [`ConcurrencyLimit`]'s `call` admits a
//! request when the counter is below the maximum (one compare-and-swap) and otherwise
//! fails at once with [`ErrorKind::Overloaded`](crate::ErrorKind::Overloaded), which
//! [`error_response`](crate::error_response) answers with **503** and
//! `x-gatekit-error: overloaded`. Nothing waits: a rejected request costs no inner call,
//! no timer and no queue slot, so an overloaded backend sheds load instead of piling up
//! requests (and memory) in the gateway. This is tower's `ConcurrencyLimit` wrapped in
//! `LoadShed`, without the semaphore's waiter queue.
//!
//! # How long a request counts
//!
//! From the call until its **response body ends**: the admitted request's slot travels
//! in the response future and then in the response body, and is released at the body's
//! end of stream, at a body error, when the body is dropped (a client that went away),
//! when the inner service fails, or when the response future is dropped (a timeout or
//! cancellation above), whichever comes first. A streaming download therefore counts
//! for as long as it streams, which is what bounds the backend's concurrent work. A
//! response whose body is already complete at the head (empty: 204, 304, redirects,
//! `HEAD`) releases the slot with the head. An upgraded connection (101) is not counted
//! after its (empty) response.
//!
//! # Readiness
//!
//! The service is as ready as its inner service: a full limit is not reported as
//! `Pending` from `poll_ready`, since that would make the caller wait (a queue); the
//! call fails instead, ready on the first poll. Clones share the [`InFlightLimit`]; the
//! gateway keeps it in an `Arc` per rule across reloads, so requests admitted by an
//! older route table's stack count against the newer one's limit.
//!
//! # Cost
//!
//! An admitted request: one compare-and-swap, one `Arc` increment for the slot, one
//! decrement at release. A response with a body is handed on as a gatekit
//! [`Body`](crate::Body) wrapping the original body and the slot: one allocation (the
//! body is boxed), none for a complete (empty) body. See `benches/limit.rs`.

mod body;
mod future;
mod in_flight;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::in_flight::InFlightLimit;
pub(crate) use self::in_flight::Slot;
pub use self::layer::ConcurrencyLimitLayer;
pub use self::service::ConcurrencyLimit;

#[cfg(test)]
mod tests;
