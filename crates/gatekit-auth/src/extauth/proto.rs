//! The messages of Envoy's `envoy.service.auth.v3.Authorization/Check`, declared by hand
//! with prost's derive: only the fields gatekit sends or reads. Unknown fields in an
//! answer are skipped by the decoder, as protobuf requires, so servers that send more
//! (dynamic metadata, query parameter edits) decode fine. Public so that an
//! authorization service or a test written in Rust can speak the protocol with the same
//! messages (with `prost::Message`'s `encode_to_vec` and `decode`).
//!
//! Field numbers are those of Envoy's API protos:
//! - `envoy/service/auth/v3/external_auth.proto`: `CheckRequest`, `CheckResponse`,
//!   `DeniedHttpResponse`, `OkHttpResponse`;
//! - `envoy/service/auth/v3/attribute_context.proto`: `AttributeContext` and its
//!   `Peer`, `Request`, `HttpRequest`;
//! - `envoy/config/core/v3/address.proto`: `Address`, `SocketAddress`;
//! - `envoy/config/core/v3/base.proto`: `HeaderValue`, `HeaderValueOption`;
//! - `envoy/type/v3/http_status.proto`: `HttpStatus`;
//! - `google/rpc/status.proto`: `Status`; `google/protobuf/wrappers.proto`: `BoolValue`.

use std::collections::HashMap;

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// `attributes = 1`.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// `source = 1`: the client.
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// `destination = 2`: the gateway's listening address.
    #[prost(message, optional, tag = "2")]
    pub destination: Option<Peer>,
    /// `request = 4`.
    #[prost(message, optional, tag = "4")]
    pub request: Option<AttributeRequest>,
    /// `context_extensions = 10`.
    #[prost(map = "string, string", tag = "10")]
    pub context_extensions: HashMap<String, String>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// `address = 1`.
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    /// `principal = 4`.
    #[prost(string, tag = "4")]
    pub principal: String,
}

/// `envoy.config.core.v3.Address` (only its `socket_address = 1` case).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// `socket_address = 1`.
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// `address = 2`.
    #[prost(string, tag = "2")]
    pub address: String,
    /// `port_value = 3` (in the `port_specifier` oneof).
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeRequest {
    /// `http = 2`.
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// `id = 1`: the `x-request-id`.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `method = 2`.
    #[prost(string, tag = "2")]
    pub method: String,
    /// `headers = 3`: lower-case names, repeated values joined with `,`.
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    /// `path = 4`: path and query.
    #[prost(string, tag = "4")]
    pub path: String,
    /// `host = 5`.
    #[prost(string, tag = "5")]
    pub host: String,
    /// `scheme = 6`.
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// `size = 9`: the body's length, -1 when unknown.
    #[prost(int64, tag = "9")]
    pub size: i64,
    /// `protocol = 10`: `HTTP/1.1`, `HTTP/2`.
    #[prost(string, tag = "10")]
    pub protocol: String,
    /// `body = 11`: the buffered body when it is UTF-8.
    #[prost(string, tag = "11")]
    pub body: String,
    /// `raw_body = 12`: the buffered body when it is not.
    #[prost(bytes = "vec", tag = "12")]
    pub raw_body: Vec<u8>,
}

/// `envoy.service.auth.v3.CheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `status = 1`: `OK` (0) allows.
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    /// The `http_response` oneof: `denied_response = 2`, `ok_response = 3`.
    #[prost(oneof = "HttpResponse", tags = "2, 3")]
    pub http_response: Option<HttpResponse>,
}

/// `CheckResponse.http_response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    /// `denied_response = 2`.
    #[prost(message, tag = "2")]
    Denied(DeniedHttpResponse),
    /// `ok_response = 3`.
    #[prost(message, tag = "3")]
    Ok(OkHttpResponse),
}

/// `google.rpc.Status` (without `details = 3`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// `code = 1`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `message = 2`.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.auth.v3.DeniedHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// `status = 1`.
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// `headers = 2`.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `body = 3`.
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.service.auth.v3.OkHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// `headers = 2`: added to (or replacing) the request's.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `headers_to_remove = 5`.
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
    /// `response_headers_to_add = 6`: added to the client's response.
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
}

/// `envoy.type.v3.HttpStatus` (its `code` is an enum of status codes, an int on the
/// wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// `code = 1`.
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// `header = 1`.
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `append = 2` (deprecated; a `google.protobuf.BoolValue`).
    #[prost(message, optional, tag = "2")]
    pub append: Option<BoolValue>,
    /// `append_action = 3`: `APPEND_IF_EXISTS_OR_ADD` (0), `ADD_IF_ABSENT` (1),
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (2), `OVERWRITE_IF_EXISTS` (3).
    #[prost(int32, tag = "3")]
    pub append_action: i32,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// `key = 1`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
    /// `raw_value = 3`: used instead of `value` when set.
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `google.protobuf.BoolValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// `value = 1`.
    #[prost(bool, tag = "1")]
    pub value: bool,
}
