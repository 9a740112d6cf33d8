use std::borrow::Cow;
use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_layer::Layer;

use super::*;

fn norm(path: &str) -> String {
    normalize(path, &PathPolicy::default())
        .unwrap()
        .into_owned()
}

/// RFC 3986 §5.4.1 and §5.4.2: each relative reference resolved against the base
/// `http://a/b/c/d;p?q` gives a merged path (§5.2.3) whose dot segments §5.2.4
/// removes. The left column is that merged path, the right the RFC's result.
#[test]
fn rfc3986_section_5_4_examples() {
    for (merged, expected) in [
        // 5.4.1 normal examples
        ("/b/c/g", "/b/c/g"),
        ("/b/c/./g", "/b/c/g"),
        ("/b/c/g/", "/b/c/g/"),
        ("/g", "/g"),
        ("/b/c/d;p?y", "/b/c/d;p?y"),
        ("/b/c/g?y", "/b/c/g?y"),
        ("/b/c/;x", "/b/c/;x"),
        ("/b/c/g;x", "/b/c/g;x"),
        ("/b/c/g;x?y", "/b/c/g;x?y"),
        ("/b/c/.", "/b/c/"),
        ("/b/c/./", "/b/c/"),
        ("/b/c/..", "/b/"),
        ("/b/c/../", "/b/"),
        ("/b/c/../g", "/b/g"),
        ("/b/c/../..", "/"),
        ("/b/c/../../", "/"),
        ("/b/c/../../g", "/g"),
        // 5.4.2 abnormal examples
        ("/b/c/../../../g", "/g"),
        ("/b/c/../../../../g", "/g"),
        ("/./g", "/g"),
        ("/../g", "/g"),
        ("/b/c/g.", "/b/c/g."),
        ("/b/c/.g", "/b/c/.g"),
        ("/b/c/g..", "/b/c/g.."),
        ("/b/c/..g", "/b/c/..g"),
        ("/b/c/./../g", "/b/g"),
        ("/b/c/./g/.", "/b/c/g/"),
        ("/b/c/g/./h", "/b/c/g/h"),
        ("/b/c/g/../h", "/b/c/h"),
        ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
        ("/b/c/g;x=1/../y", "/b/c/y"),
        // §5.2.4's own walk-through
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
    ] {
        assert_eq!(norm(merged), expected, "{merged}");
    }
}

#[test]
fn already_normal_paths_are_borrowed() {
    for path in [
        "/",
        "/a/b",
        "/a/b/",
        "/a//b",
        "/a.b/..c/.d",
        "/x?q=/../%zz",
        "*",
    ] {
        assert!(
            matches!(
                normalize(path, &PathPolicy::default()),
                Ok(Cow::Borrowed(_))
            ),
            "{path}"
        );
    }
}

#[test]
fn unreserved_escapes_are_decoded_others_upper_cased() {
    assert_eq!(norm("/%61dmin"), "/admin");
    assert_eq!(norm("/%7Euser/%2d%5F"), "/~user/-_");
    assert_eq!(norm("/a%20b%3f"), "/a%20b%3F");
    assert_eq!(norm("/%2e%2e/%2E%2E/etc/passwd"), "/etc/passwd");
    assert_eq!(norm("/a/.%2e/b"), "/b");
    // Decoded once: %25 is not unreserved, so %252e stays (never becomes `.`).
    assert_eq!(norm("/%252e%252e/x"), "/%252e%252e/x");
    // The query is not touched.
    assert_eq!(norm("/a/../b?p=/../%2e"), "/b?p=/../%2e");
}

#[test]
fn invalid_escapes_are_refused() {
    for path in ["/%", "/%2", "/%zz", "/a%g0"] {
        assert_eq!(
            normalize(path, &PathPolicy::default()),
            Err(PathError::InvalidEscape),
            "{path}"
        );
    }
}

#[test]
fn backslashes_are_separators() {
    assert_eq!(norm("/a\\..\\admin"), "/admin");
    assert_eq!(norm("/a\\b"), "/a/b");
}

#[test]
fn escaped_slashes_follow_the_policy() {
    let keep = PathPolicy::default();
    let reject = PathPolicy::default().escaped_slashes(EscapedSlashes::Reject);
    let decode = PathPolicy::default().escaped_slashes(EscapedSlashes::Decode);
    assert_eq!(normalize("/a%2f..%2Fb", &keep).unwrap(), "/a%2F..%2Fb");
    assert_eq!(
        normalize("/a/..%5c..%5Cetc", &keep).unwrap(),
        "/a/..%5C..%5Cetc"
    );
    assert_eq!(normalize("/a%2Fb", &reject), Err(PathError::EscapedSlash));
    assert_eq!(normalize("/a%5cb", &reject), Err(PathError::EscapedSlash));
    assert_eq!(normalize("/x/a%2f..%2Fb", &decode).unwrap(), "/x/b");
    assert_eq!(normalize("/x/..%5C..%5Cetc", &decode).unwrap(), "/etc");
}

#[test]
fn slashes_merge_only_when_asked() {
    let merge = PathPolicy::default().merge_slashes(true);
    assert_eq!(norm("//a///b//"), "//a///b//");
    assert_eq!(normalize("//a///b//", &merge).unwrap(), "/a/b/");
    assert_eq!(normalize("/a//../b", &merge).unwrap(), "/b");
    assert_eq!(norm("/a//../b"), "/a/b");
    let merge_only = merge.normalize(false);
    assert_eq!(normalize("//a/./b", &merge_only).unwrap(), "/a/./b");
}

#[test]
fn normalisation_off_leaves_dots_and_escapes() {
    let off = PathPolicy::default().normalize(false);
    assert_eq!(normalize("/a/../%2e", &off).unwrap(), "/a/../%2e");
    assert_eq!(
        normalize("/a%2Fb", &off.escaped_slashes(EscapedSlashes::Reject)),
        Err(PathError::EscapedSlash)
    );
}

#[test]
fn fuzz_entry_point_holds_on_samples() {
    for sample in [
        &b"/a/../b"[..],
        b"/%2e%2e/%2f/..\\x",
        b"//..//.%2E/",
        b"/\xff\xfe/%C3%A9/../",
        b"",
        b"?",
        b"/a?b/../",
    ] {
        path_normalize(sample);
    }
}

fn echo_path() -> impl tower_service::Service<
    Request<()>,
    Response = Response<String>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<String>, Infallible>>,
> + Clone {
    tower::service_fn(|req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(req.uri().to_string())))
    })
}

#[tokio::test]
async fn the_service_routes_the_normal_form_and_refuses_bad_targets() {
    let svc =
        NormalizePathLayer::new(PathPolicy::default().with_max_target_len(32)).layer(echo_path());
    let call = |uri: &str| {
        let req = Request::get(uri)
            .header(http::header::HOST, "example.com")
            .body(())
            .unwrap();
        svc.clone().oneshot(req)
    };
    let rsp = call("/a/%2e%2e/b?q=1").await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.body(), "/b?q=1");
    let rsp = call("http://example.com/x/../y").await.unwrap();
    assert_eq!(rsp.body(), "http://example.com/y");
    let rsp = call("/%zz").await.unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(rsp.headers()["x-gatekit-error"], "invalid-path");
    assert!(rsp.body().is_empty());
    let rsp = call(&format!("/{}", "a".repeat(32))).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::URI_TOO_LONG);
    let rsp = call(&format!("/{}", "a".repeat(31))).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_service_refuses_a_bad_host_before_anything_else_and_closes() {
    let svc = NormalizePathLayer::new(PathPolicy::default()).layer(echo_path());
    let two = Request::get("/a")
        .header(http::header::HOST, "a.example")
        .header(http::header::HOST, "b.example")
        .body(())
        .unwrap();
    let rsp = svc.clone().oneshot(two).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(rsp.headers()["x-gatekit-error"], "duplicate-host");
    assert_eq!(rsp.headers()["connection"], "close");
    let none = Request::get("/a").body(()).unwrap();
    let rsp = svc.clone().oneshot(none).await.unwrap();
    assert_eq!(rsp.headers()["x-gatekit-error"], "missing-host");
    // HTTP/2 carries no connection header.
    let h2 = Request::get("https://a.example/a")
        .version(http::Version::HTTP_2)
        .header(http::header::HOST, "b.example")
        .body(())
        .unwrap();
    let rsp = svc.clone().oneshot(h2).await.unwrap();
    assert_eq!(rsp.headers()["x-gatekit-error"], "conflicting-host");
    assert!(!rsp.headers().contains_key("connection"));
}
