//! Gateway API conformance features (GEP-2162): one list, [`FEATURES`], of every feature
//! of the HTTP, GRPC, TLS and L4 (TCPRoute, UDPRoute) conformance profiles, supported or
//! not, and for supported ones the tests that prove it.
//!
//! That one list is what gatekit reports everywhere: the accepted GatewayClass's
//! `status.supportedFeatures` (the supported names, sorted), `gatekit validate
//! --features`, and `docs/conformance.md` ([`markdown`]). A test checks that every test a
//! supported feature names exists, so the list cannot claim more than the tests prove.
//!
//! The names are those of the Gateway API's `pkg/features` (`gateway.go`,
//! `httproute.go`, `grpcroute.go`, `tlsroute.go`, `tcproute.go`, `udproute.go`,
//! `referencegrant.go`, `backendtlspolicy.go`) at
//! commit [`SOURCE_COMMIT`], the upstream main branch after v1.6.1, which is to become
//! v1.7.

use std::fmt::Write as _;

/// The `kubernetes-sigs/gateway-api` commit the feature names were read from.
pub const SOURCE_COMMIT: &str = "4564255ac2c35d582249b3cdf261bdf51c8bca32";

/// A feature's conformance level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level {
    /// Every conformant implementation of the resource supports it.
    Core,
    /// Optional: an implementation says whether it supports it.
    Extended,
}

impl Level {
    /// `core` or `extended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Extended => "extended",
        }
    }
}

/// The Gateway API release channel a feature's fields are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Channel {
    /// The standard channel.
    Standard,
    /// The experimental channel.
    Experimental,
}

impl Channel {
    /// `standard` or `experimental`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Experimental => "experimental",
        }
    }
}

/// Whether gatekit supports a feature: the tests that prove it, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Support {
    Supported(&'static [&'static str]),
    Unsupported(&'static str),
}

/// One conformance feature: its name, resource, level, channel, and whether gatekit
/// supports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    name: &'static str,
    resource: &'static str,
    level: Level,
    channel: Channel,
    support: Support,
}

impl Feature {
    const fn yes(
        name: &'static str,
        resource: &'static str,
        level: Level,
        channel: Channel,
        tests: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            resource,
            level,
            channel,
            support: Support::Supported(tests),
        }
    }

    const fn no(
        name: &'static str,
        resource: &'static str,
        level: Level,
        channel: Channel,
        reason: &'static str,
    ) -> Self {
        Self {
            name,
            resource,
            level,
            channel,
            support: Support::Unsupported(reason),
        }
    }

    /// The feature's name, as in `status.supportedFeatures` (`HTTPRouteQueryParamMatching`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The resource the feature belongs to (`Gateway`, `HTTPRoute`, `GRPCRoute`,
    /// `ReferenceGrant`, `BackendTLSPolicy`).
    pub fn resource(&self) -> &'static str {
        self.resource
    }

    /// Core or extended.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Standard or experimental channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Whether gatekit supports the feature.
    pub fn is_supported(&self) -> bool {
        matches!(self.support, Support::Supported(_))
    }

    /// The tests that prove a supported feature, as `path/from/workspace/root.rs::test_fn`;
    /// empty for an unsupported one.
    pub fn tests(&self) -> &'static [&'static str] {
        match self.support {
            Support::Supported(tests) => tests,
            Support::Unsupported(_) => &[],
        }
    }

    /// Why gatekit does not support the feature; `None` when it does.
    pub fn unsupported_reason(&self) -> Option<&'static str> {
        match self.support {
            Support::Supported(_) => None,
            Support::Unsupported(reason) => Some(reason),
        }
    }
}

use Channel::{Experimental, Standard};
use Level::{Core, Extended};

const TRANSLATE_FILTERS: &str =
    "crates/gatekit-k8s/tests/translate.rs::every_http_route_filter_translates";
const ON_THE_WIRE: &str = "tests/routing.rs::filters_apply_on_the_wire";
const MATCH_KINDS: &str = "tests/routing.rs::every_match_kind_routes_to_its_backend";
const REDIRECT_STATUS: &str =
    "crates/gatekit-core/src/filter/tests.rs::redirect_hostname_path_and_status";
const ROUTE_TIMEOUTS: &str =
    "tests/timeouts.rs::route_timeouts_answer_504_and_cancel_the_upstream_request";

/// Every Gateway API feature of the HTTP, GRPC, TLS and L4 conformance profiles
/// (Gateway, ReferenceGrant, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
/// BackendTLSPolicy; core and extended), with gatekit's support. A feature is supported
/// only when the tests it names exist (a test checks that they do).
pub const FEATURES: &[Feature] = &[
    // --- Gateway ---
    Feature::yes(
        "Gateway",
        "Gateway",
        Core,
        Standard,
        &[
            "crates/gatekit-k8s/tests/translate.rs::two_listeners_attach_by_section_name_and_port",
            "crates/gatekit-k8s/tests/translate.rs::listener_conflicts_on_one_port",
            "crates/gatekit-k8s/tests/status_write.rs::writes_route_gateway_and_class_status_keeping_foreign_entries",
            "tests/wiring.rs::routes_from_files_reach_their_backends",
            "tests/wiring.rs::https_certificates_by_sni_and_rotation_by_secret_change",
            "crates/gatekit-k8s/tests/gateway_status.rs::valid_gateway_with_two_listeners",
            "crates/gatekit-k8s/tests/gateway_status.rs::indistinct_listeners_are_all_conflicted",
        ],
    ),
    Feature::yes(
        "GatewayAddressEmpty",
        "Gateway",
        Extended,
        Standard,
        &[
            "crates/gatekit-k8s/tests/gateway_status.rs::gateway_address_empty_is_assigned_from_the_gateway_service",
            "crates/gatekit-k8s/tests/status_write.rs::gateway_addresses_from_the_gateway_service_are_written",
        ],
    ),
    Feature::yes(
        "GatewayBackendClientCertificate",
        "Gateway",
        Extended,
        Standard,
        &[
            "tests/backend_tls.rs::the_gateways_client_certificate_is_presented_and_without_one_the_backend_refuses",
            "crates/gatekit-k8s/tests/backend_tls.rs::gateway_client_certificates_key_the_upstreams_of_their_routes",
        ],
    ),
    Feature::yes(
        "GatewayFrontendClientCertificateValidation",
        "Gateway",
        Extended,
        Standard,
        &[
            "tests/frontend_tls.rs::a_required_client_certificate_is_verified_and_forwarded",
            "tests/frontend_tls.rs::an_unusable_ca_ref_keeps_the_https_listener_down_and_http_up",
        ],
    ),
    Feature::yes(
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        "Gateway",
        Extended,
        Standard,
        &[
            "tests/frontend_tls.rs::insecure_fallback_serves_everyone_and_forwards_only_verified_identities",
        ],
    ),
    Feature::yes(
        "GatewayHTTPListenerIsolation",
        "Gateway",
        Extended,
        Standard,
        &[
            "tests/listener_isolation.rs::each_host_reaches_only_its_most_specific_listeners_routes",
            "crates/gatekit-core/src/router.rs::the_most_specific_listener_answers_alone",
        ],
    ),
    Feature::yes(
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        "Gateway",
        Extended,
        Standard,
        &[
            "tests/listener_isolation.rs::a_host_of_another_listener_than_the_sni_is_misdirected",
            "tests/listener_isolation.rs::h2_connection_reuse_for_another_listeners_host_is_misdirected",
        ],
    ),
    Feature::no(
        "GatewayInfrastructurePropagation",
        "Gateway",
        Extended,
        Standard,
        "gatekit provisions no infrastructure to propagate spec.infrastructure to",
    ),
    Feature::yes(
        "GatewayPort8080",
        "Gateway",
        Extended,
        Standard,
        &["tests/wiring.rs::gateway_port_8080_serves_and_redirects_keep_the_listener_port"],
    ),
    Feature::no(
        "GatewayStaticAddresses",
        "Gateway",
        Extended,
        Standard,
        "gatekit allocates no address: a requested one is honoured only when the gateway Service (kubernetes.gatewayService) already has it",
    ),
    Feature::yes(
        "ListenerSet",
        "Gateway",
        Extended,
        Standard,
        &[
            "crates/gatekit-k8s/tests/listenerset.rs::allowed_from_same_attaches_a_listener_set_of_the_gateway_namespace_only",
            "crates/gatekit-k8s/tests/listenerset.rs::allowed_from_all_attaches_a_listener_set_of_any_namespace",
            "crates/gatekit-k8s/tests/listenerset.rs::allowed_from_selector_attaches_listener_sets_of_matching_namespaces",
            "crates/gatekit-k8s/tests/listenerset.rs::refused_by_default_and_with_from_none",
            "crates/gatekit-k8s/tests/listenerset.rs::refused_when_the_parent_gateway_is_missing_or_not_accepted",
            "crates/gatekit-k8s/tests/listenerset.rs::a_listener_conflicting_with_the_gateway_loses_and_the_others_serve",
            "crates/gatekit-k8s/tests/listenerset.rs::a_protocol_conflict_with_the_gateway_leaves_a_listener_set_without_listeners_unaccepted",
            "crates/gatekit-k8s/tests/listenerset.rs::between_two_listener_sets_the_older_wins_then_namespace_and_name",
            "crates/gatekit-k8s/tests/listenerset.rs::a_route_attaches_to_a_listener_set_listener_by_section_name",
            "crates/gatekit-k8s/tests/listenerset.rs::a_route_on_a_listener_set_without_section_name_attaches_to_all_its_listeners_by_port",
            "crates/gatekit-k8s/tests/listenerset.rs::a_route_on_the_gateway_does_not_attach_to_listener_set_listeners",
            "crates/gatekit-k8s/tests/listenerset.rs::a_listener_set_listener_allows_routes_relative_to_the_listener_set_namespace",
            "crates/gatekit-k8s/tests/listenerset.rs::route_parent_ref_to_a_missing_or_refused_listener_set",
            "crates/gatekit-k8s/tests/listenerset.rs::a_route_with_gateway_and_listener_set_parents_has_independent_statuses",
            "crates/gatekit-k8s/tests/listenerset.rs::certificates_resolve_in_the_listener_set_namespace_with_its_own_grants",
            "tests/listenerset.rs::a_listener_set_adds_listeners_with_their_own_routes_and_certificates",
            "tests/k8s.rs::listener_set_is_served_and_its_status_written_back",
            "tests/validate.rs::listener_sets_are_shown_and_a_refused_one_fails",
        ],
    ),
    // --- ReferenceGrant ---
    Feature::yes(
        "ReferenceGrant",
        "ReferenceGrant",
        Core,
        Standard,
        &[
            "crates/gatekit-k8s/tests/translate.rs::cross_namespace_backend_needs_reference_grant",
            "tests/validate.rs::a_cross_namespace_backend_without_reference_grant_is_reported_and_fails",
        ],
    ),
    // --- HTTPRoute ---
    Feature::yes(
        "HTTPRoute",
        "HTTPRoute",
        Core,
        Standard,
        &[
            MATCH_KINDS,
            "tests/routing.rs::weighted_split_is_proportional_and_weight_zero_never_chosen",
            "tests/routing.rs::no_route_is_404_invalid_backend_is_500_dead_backend_is_503",
            ON_THE_WIRE,
            "crates/gatekit-k8s/tests/translate.rs::hostname_intersection_exact_wildcard_none_and_merge",
            "crates/gatekit-k8s/tests/translate.rs::missing_service_wrong_port_and_kind",
            TRANSLATE_FILTERS,
            "tests/wiring.rs::routes_from_files_reach_their_backends",
        ],
    ),
    Feature::yes(
        "HTTPRoute303RedirectStatusCode",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_303_redirect_status_code_answers_303",
            REDIRECT_STATUS,
        ],
    ),
    Feature::yes(
        "HTTPRoute307RedirectStatusCode",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_307_redirect_status_code_answers_307",
            REDIRECT_STATUS,
        ],
    ),
    Feature::yes(
        "HTTPRoute308RedirectStatusCode",
        "HTTPRoute",
        Extended,
        Standard,
        &[REDIRECT_STATUS, ON_THE_WIRE],
    ),
    Feature::yes(
        "HTTPRouteBackendProtocolH2C",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/wiring.rs::an_h2c_service_is_spoken_to_over_http2",
            "tests/app_protocol.rs::every_served_app_protocol_reaches_its_backend_in_that_protocol",
        ],
    ),
    Feature::yes(
        "HTTPRouteBackendProtocolWebSocket",
        "HTTPRoute",
        Extended,
        Standard,
        &["tests/app_protocol.rs::a_websocket_upgrade_works_through_a_kubernetes_io_ws_port"],
    ),
    Feature::yes(
        "HTTPRouteBackendRequestHeaderModification",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_backend_request_header_modification_changes_only_that_backends_request",
            TRANSLATE_FILTERS,
            "crates/gatekit-core/src/weighted/tests.rs::the_chosen_backend_ref_gets_its_own_filters",
        ],
    ),
    Feature::yes(
        "HTTPRouteBackendRequestRedirect",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/features_e2e.rs::httproute_backend_request_redirect_answers_the_chosen_backend_refs_redirect",
        ],
    ),
    Feature::yes(
        "HTTPRouteBackendTimeout",
        "HTTPRoute",
        Extended,
        Standard,
        &[ROUTE_TIMEOUTS, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRouteBackendURLRewrite",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/features_e2e.rs::httproute_backend_url_rewrite_rewrites_the_path_the_backend_sees",
        ],
    ),
    Feature::yes(
        "HTTPRouteCORS",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/cors.rs::httproute_cors_preflight_is_answered_without_the_backend",
            "tests/cors.rs::httproute_cors_actual_request_is_proxied_with_cors_headers",
            "tests/cors.rs::httproute_cors_disallowed_origin_gets_no_cors_headers",
            "crates/gatekit-k8s/tests/translate.rs::httproute_cors_filter_translates_on_rules_and_backend_refs",
        ],
    ),
    Feature::yes(
        "HTTPRouteDestinationPortMatching",
        "HTTPRoute",
        Extended,
        Experimental,
        &["tests/wiring.rs::httproute_destination_port_matching_routes_by_the_listener_port"],
    ),
    Feature::yes(
        "HTTPRouteHostRewrite",
        "HTTPRoute",
        Extended,
        Standard,
        &[ON_THE_WIRE, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRouteMethodMatching",
        "HTTPRoute",
        Extended,
        Standard,
        &[MATCH_KINDS, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRouteNamedRouteRule",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_named_route_rule_routes_and_keeps_the_names",
            TRANSLATE_FILTERS,
        ],
    ),
    Feature::yes(
        "HTTPRouteParentRefPort",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/wiring.rs::httproute_destination_port_matching_routes_by_the_listener_port",
            "crates/gatekit-k8s/tests/translate.rs::two_listeners_attach_by_section_name_and_port",
        ],
    ),
    Feature::yes(
        "HTTPRoutePathRedirect",
        "HTTPRoute",
        Extended,
        Standard,
        &[ON_THE_WIRE, REDIRECT_STATUS, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRoutePathRewrite",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            ON_THE_WIRE,
            "crates/gatekit-core/src/filter/tests.rs::replace_prefix_match_follows_the_spec_table",
            TRANSLATE_FILTERS,
        ],
    ),
    Feature::yes(
        "HTTPRoutePortRedirect",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_port_redirect_puts_the_port_in_the_location_unless_well_known",
            "crates/gatekit-core/src/filter/tests.rs::redirect_port_table",
            TRANSLATE_FILTERS,
        ],
    ),
    Feature::yes(
        "HTTPRouteQueryParamMatching",
        "HTTPRoute",
        Extended,
        Standard,
        &[MATCH_KINDS, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRouteRequestMirror",
        "HTTPRoute",
        Extended,
        Standard,
        &[ON_THE_WIRE, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRouteRequestMultipleMirrors",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_request_multiple_mirrors_copies_to_every_mirror",
            "crates/gatekit-core/src/filter/tests.rs::several_mirrors_each_get_the_streamed_body",
            TRANSLATE_FILTERS,
        ],
    ),
    Feature::yes(
        "HTTPRouteRequestPercentageMirror",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            "tests/http_features.rs::httproute_request_percentage_mirror_samples_the_requests",
            "crates/gatekit-core/src/filter/tests.rs::mirror_fraction_is_honoured",
            TRANSLATE_FILTERS,
        ],
    ),
    Feature::yes(
        "HTTPRouteRequestTimeout",
        "HTTPRoute",
        Extended,
        Standard,
        &[ROUTE_TIMEOUTS, TRANSLATE_FILTERS],
    ),
    Feature::yes(
        "HTTPRouteResponseHeaderModification",
        "HTTPRoute",
        Extended,
        Standard,
        &[
            ON_THE_WIRE,
            "crates/gatekit-core/src/filter/tests.rs::response_header_modifier_changes_responses_only",
            TRANSLATE_FILTERS,
        ],
    ),
    Feature::yes(
        "HTTPRouteRetry",
        "HTTPRoute",
        Extended,
        Experimental,
        &[
            "tests/traffic_policy.rs::a_route_retry_sends_a_failed_attempt_to_the_other_endpoint",
            "crates/gatekit-k8s/tests/policy.rs::the_specs_retry_example_parses_and_translates",
            "crates/gatekit-k8s/tests/policy.rs::an_http_route_retry_beats_every_policy_retry",
            "crates/gatekit-core/src/retry/tests.rs::a_503_then_200_is_retried_once_with_attempt_and_shared_tried_endpoints",
        ],
    ),
    Feature::yes(
        "HTTPRouteRetryBackendTimeout",
        "HTTPRoute",
        Extended,
        Experimental,
        &[
            "tests/traffic_policy.rs::httproute_retry_backend_timeout_retries_an_attempt_that_timed_out",
            "tests/traffic_policy.rs::retries_stay_inside_the_request_timeout",
        ],
    ),
    Feature::yes(
        "HTTPRouteRetryConnectionError",
        "HTTPRoute",
        Extended,
        Experimental,
        &["tests/traffic_policy.rs::httproute_retry_connection_error_retries_a_refused_connection"],
    ),
    Feature::yes(
        "HTTPRouteSchemeRedirect",
        "HTTPRoute",
        Extended,
        Standard,
        &[ON_THE_WIRE, TRANSLATE_FILTERS],
    ),
    // --- GRPCRoute ---
    Feature::yes(
        "GRPCRoute",
        "GRPCRoute",
        Core,
        Standard,
        &[
            "crates/gatekit-k8s/tests/translate.rs::grpc_route_service_and_method_matching",
            "crates/gatekit-core/tests/proxy_http.rs::grpc_trailers_reach_an_h2_client",
            "tests/grpc.rs::exact_service_and_method_match_and_an_unmatched_method_is_unimplemented",
            "tests/grpc.rs::service_only_and_method_only_matches",
            "tests/grpc.rs::regular_expression_method_match",
            "tests/grpc.rs::header_matches_exact_and_regular_expression",
            "tests/grpc.rs::precedence_is_service_then_method_then_header_count",
            "tests/grpc.rs::listener_hostnames_pick_the_route",
            "tests/grpc.rs::route_hostnames_intersect_with_the_listener_hostname",
            "tests/grpc.rs::weighted_backend_refs_split_calls",
            "tests/grpc.rs::a_refused_backend_connection_is_unavailable",
            "tests/grpc.rs::backend_status_message_details_and_trailers_pass_through",
            "tests/grpc.rs::server_streaming_through_the_gateway",
            "tests/grpc.rs::bidi_streaming_through_the_gateway_is_interactive",
            "tests/grpc.rs::request_mirror_copies_the_call_to_the_mirror_backend",
        ],
    ),
    Feature::yes(
        "GRPCRouteNamedRouteRule",
        "GRPCRoute",
        Extended,
        Standard,
        &[
            "tests/features_e2e.rs::grpcroute_named_route_rule_routes_each_method_to_its_rules_backend",
            "tests/grpc.rs::named_rules_route_each_method_to_their_backend",
        ],
    ),
    Feature::yes(
        "GRPCRouteRequestHeaderModifier",
        "GRPCRoute",
        Extended,
        Standard,
        &[
            "tests/features_e2e.rs::grpcroute_request_header_modifier_sets_adds_and_removes_metadata",
            "tests/grpc.rs::request_and_response_header_modifiers",
        ],
    ),
    // --- TLSRoute, TCPRoute, UDPRoute ---
    Feature::yes(
        "TLSRoute",
        "TLSRoute",
        Core,
        Standard,
        &[
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_listeners_are_programmed_by_protocol_and_mode",
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_listener_conflicts_on_one_port",
            "crates/gatekit-k8s/tests/stream_routes.rs::route_kinds_must_fit_the_listener_protocol",
            "crates/gatekit-k8s/tests/stream_routes.rs::tls_route_hostnames_intersect_with_the_listener",
            "crates/gatekit-k8s/tests/stream_routes.rs::cross_namespace_backends_need_a_reference_grant",
            "crates/gatekit-k8s/tests/stream_routes.rs::weights_and_invalid_backends",
            "tests/l4_routes.rs::tls_passthrough_routes_by_sni_to_backends_with_their_own_certificates",
            "tests/l4_routes.rs::a_tls_route_edited_while_serving_keeps_open_passthrough_connections",
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_route_statuses_are_written_back",
        ],
    ),
    Feature::yes(
        "TLSRouteModeMixed",
        "TLSRoute",
        Extended,
        Experimental,
        &[
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_listeners_are_programmed_by_protocol_and_mode",
            "tests/l4_routes.rs::tls_terminate_and_passthrough_listeners_share_a_port",
        ],
    ),
    Feature::yes(
        "TLSRouteModeTerminate",
        "TLSRoute",
        Extended,
        Standard,
        &[
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_listeners_are_programmed_by_protocol_and_mode",
            "crates/gatekit-k8s/tests/stream_routes.rs::tls_route_hostnames_intersect_with_the_listener",
            "tests/l4_routes.rs::tls_terminate_and_passthrough_listeners_share_a_port",
        ],
    ),
    Feature::yes(
        "TCPRoute",
        "TCPRoute",
        Extended,
        Standard,
        &[
            "crates/gatekit-k8s/tests/stream_routes.rs::several_tcp_routes_on_a_listener_are_all_accepted_oldest_first",
            "crates/gatekit-k8s/tests/stream_routes.rs::route_kinds_must_fit_the_listener_protocol",
            "crates/gatekit-k8s/tests/stream_routes.rs::cross_namespace_backends_need_a_reference_grant",
            "crates/gatekit-k8s/tests/stream_routes.rs::weights_and_invalid_backends",
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_backends_ignore_the_app_protocol",
            "tests/l4_routes.rs::tcp_route_echoes_a_megabyte_both_ways_byte_exact",
            "tests/l4_routes.rs::tcp_route_weights_split_a_thousand_connections",
            "tests/l4_routes.rs::tcp_route_follows_endpoint_and_route_changes_while_serving",
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_route_statuses_are_written_back",
        ],
    ),
    Feature::yes(
        "UDPRoute",
        "UDPRoute",
        Extended,
        Standard,
        &[
            "crates/gatekit-k8s/tests/stream_routes.rs::udp_routes_use_udp_service_ports",
            "crates/gatekit-k8s/tests/stream_routes.rs::route_kinds_must_fit_the_listener_protocol",
            "tests/l4_routes.rs::udp_route_echoes_a_thousand_dns_like_datagrams",
            "crates/gatekit-k8s/tests/stream_routes.rs::stream_route_statuses_are_written_back",
        ],
    ),
    // --- BackendTLSPolicy ---
    Feature::yes(
        "BackendTLSPolicy",
        "BackendTLSPolicy",
        Core,
        Standard,
        &[
            "tests/backend_tls.rs::the_policy_ca_and_hostname_reencrypt_to_the_backend",
            "tests/backend_tls.rs::another_ca_or_another_hostname_fails_verification_with_502_upstream_tls",
            "tests/backend_tls.rs::an_invalid_ca_reference_answers_500_and_never_sends_cleartext",
            "crates/gatekit-k8s/tests/backend_tls.rs::a_valid_policy_is_accepted_at_every_gateway_whose_routes_reach_the_service",
            "crates/gatekit-k8s/tests/backend_tls.rs::invalid_ca_references_are_refused_and_their_backends_answer_500",
            "crates/gatekit-k8s/tests/backend_tls.rs::the_older_policy_wins_a_target_and_a_section_does_not_conflict_with_the_whole",
            "crates/gatekit-k8s/tests/backend_tls.rs::a_config_map_change_is_translated_in_full_and_fixes_the_policy",
        ],
    ),
    Feature::yes(
        "BackendTLSPolicySANValidation",
        "BackendTLSPolicy",
        Extended,
        Standard,
        &[
            "tests/backend_tls.rs::subject_alt_names_of_dns_and_uri_type_verify_and_mismatches_answer_502",
            "crates/gatekit-k8s/tests/backend_tls.rs::subject_alt_names_and_system_roots_reach_the_upstream",
        ],
    ),
];

/// The names of the supported features, sorted ascending (as GatewayClass
/// `status.supportedFeatures` must be).
pub fn supported_names() -> Vec<&'static str> {
    let mut names: Vec<_> = FEATURES
        .iter()
        .filter(|f| f.is_supported())
        .map(Feature::name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `docs/conformance.md`: every feature, supported or not, and its tests or reason.
pub fn markdown() -> String {
    let supported = FEATURES.iter().filter(|f| f.is_supported()).count();
    let mut out = String::new();
    out.push_str("# Gateway API conformance features\n\n");
    out.push_str(
        "<!-- Generated from crates/gatekit-k8s/src/features.rs; do not edit by hand.\n     \
         Regenerate with: GATEKIT_BLESS=1 cargo test -p gatekit-k8s --test features -->\n\n",
    );
    let _ = writeln!(
        out,
        "Every feature of the Gateway API HTTP, GRPC, TLS and L4 conformance profiles (GEP-2162), \
         supported or not. Names are from `kubernetes-sigs/gateway-api` `pkg/features` at \
         commit `{SOURCE_COMMIT}` (main after v1.6.1, the coming v1.7).\n"
    );
    let _ = writeln!(
        out,
        "gatekit supports {supported} of {} features. The supported ones are what the \
         accepted GatewayClass reports in `status.supportedFeatures` and what `gatekit \
         validate --features` prints; each names the tests that prove it (a test fails \
         when a named test does not exist).",
        FEATURES.len()
    );
    let mut resource = "";
    for f in FEATURES {
        if f.resource != resource {
            resource = f.resource;
            let _ = write!(
                out,
                "\n## {resource}\n\n| Feature | Level | Channel | Supported | Tests / reason |\n|---|---|---|---|---|\n"
            );
        }
        let detail = match f.support {
            Support::Supported(tests) => tests
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join("<br>"),
            Support::Unsupported(reason) => reason.to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {detail} |",
            f.name,
            f.level.as_str(),
            f.channel.as_str(),
            if f.is_supported() { "yes" } else { "no" },
        );
    }
    out
}

/// The plain-text listing `gatekit validate --features` prints: one feature a line
/// (`name  level  supported|unsupported`), then its tests or reason, indented.
pub fn listing() -> String {
    let mut out = String::new();
    for f in FEATURES {
        let _ = writeln!(
            out,
            "{:<60} {:<8} {}",
            f.name,
            f.level.as_str(),
            if f.is_supported() {
                "supported"
            } else {
                "unsupported"
            }
        );
        match f.support {
            Support::Supported(tests) => {
                for t in tests {
                    let _ = writeln!(out, "    test: {t}");
                }
            }
            Support::Unsupported(reason) => {
                let _ = writeln!(out, "    why not: {reason}");
            }
        }
    }
    let supported = FEATURES.iter().filter(|f| f.is_supported()).count();
    let _ = writeln!(
        out,
        "{supported} of {} features supported (names from kubernetes-sigs/gateway-api@{SOURCE_COMMIT})",
        FEATURES.len()
    );
    out
}
