//! CPU per request of a JWT check with a cached key (RS256 with a 2048-bit key, ES256),
//! beside the same service without authentication, with allocation counts.
//!
//! Run: `cargo bench -p gatekit-auth --bench jwt`
//!
//! Each iteration calls the service with a request that carries a valid token and polls
//! the response once (the inner service answers at once). The request is built outside
//! the timed section; keys come from a local JWKS, parsed when the layer was built.
#![allow(clippy::unwrap_used, missing_docs)]

use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use divan::{Bencher, black_box};
use futures_util::FutureExt;
use gatekit_auth::jwt::{JwksSource, JwtConfig, JwtLayer, JwtProvider};
use gatekit_core::{Body, BoxError};
use http::{Request, Response, header};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::json;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

#[derive(Clone, Copy)]
struct Answer;

impl Service<Request<Body>> for Answer {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        ready(Ok(Response::new(Body::empty())))
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "exp": exp, "scope": "read write"})
        .to_string()
}

fn signed(alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let msg = format!(
        "{}.{}",
        b64(json!({"alg": alg, "typ": "JWT", "kid": "k"})
            .to_string()
            .as_bytes()),
        b64(claims().as_bytes())
    );
    let signature = sign(msg.as_bytes());
    format!("{msg}.{}", b64(&signature))
}

/// A layer whose local JWKS holds `jwk`, and a token it accepts.
fn rs256() -> (JwtLayer, String) {
    let pem = include_str!("../tests/fixtures/jwt-rsa-a.pem");
    let der = STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let key = sig::RsaKeyPair::from_pkcs8(&der).unwrap();
    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let jwk = json!({"kty": "RSA", "kid": "k", "n": b64(&c.n), "e": b64(&c.e)});
    let token = signed("RS256", |msg| {
        let mut out = vec![0; key.public().modulus_len()];
        key.sign(&sig::RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut out)
            .unwrap();
        out
    });
    (layer(jwk), token)
}

fn es256() -> (JwtLayer, String) {
    let rng = SystemRandom::new();
    let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let key = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let p = key.public_key().as_ref();
    let jwk =
        json!({"kty": "EC", "kid": "k", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])});
    let token = signed("ES256", |msg| {
        key.sign(&rng, msg).unwrap().as_ref().to_vec()
    });
    (layer(jwk), token)
}

fn layer(jwk: serde_json::Value) -> JwtLayer {
    let set = json!({"keys": [jwk]}).to_string();
    let provider = JwtProvider::new("bench", JwksSource::Local(set))
        .issuer("https://issuer.test")
        .audiences(["api"]);
    JwtLayer::new(JwtConfig::new([provider])).unwrap()
}

fn run<S>(bencher: Bencher<'_, '_>, mut svc: S, token: String)
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
{
    let make = || {
        Request::get("/v1/items")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // The token verifies: the bench measures the path of a good request.
    svc.call(make()).now_or_never().unwrap().unwrap();
    bencher.with_inputs(make).bench_local_values(|req| {
        drop(black_box(svc.call(req).now_or_never()));
    });
}

#[divan::bench]
fn no_auth(bencher: Bencher<'_, '_>) {
    run(bencher, Answer, es256().1);
}

#[divan::bench]
fn jwt_rs256(bencher: Bencher<'_, '_>) {
    let (layer, token) = rs256();
    run(bencher, layer.layer(Answer), token);
}

#[divan::bench]
fn jwt_es256(bencher: Bencher<'_, '_>) {
    let (layer, token) = es256();
    run(bencher, layer.layer(Answer), token);
}
