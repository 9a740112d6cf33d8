use std::time::{Duration, UNIX_EPOCH};

use super::format::{Value, trace_id, write_line};
use super::{AccessLogField, AccessLogFormat, AccessLogSettings};

fn line(format: AccessLogFormat, values: &[(AccessLogField, Value<'static>)]) -> String {
    let fields: Vec<_> = values.iter().map(|(f, _)| *f).collect();
    let mut buf = String::from("left over");
    let mut i = 0;
    write_line(&mut buf, format, &fields, |_| {
        let v = match &values[i].1 {
            Value::Absent => Value::Absent,
            Value::Bytes(b) => Value::Bytes(b),
            Value::Int(n) => Value::Int(*n),
            Value::Millis(m) => Value::Millis(*m),
            Value::Addr(a) => Value::Addr(*a),
            Value::Time(t) => Value::Time(*t),
        };
        i += 1;
        v
    });
    buf
}

#[test]
fn json_escapes_quotes_controls_and_non_ascii_bytes() {
    let text = line(
        AccessLogFormat::Json,
        &[
            (AccessLogField::Path, Value::Bytes(b"/a\"b\\c\n\xff")),
            (AccessLogField::Status, Value::Int(200)),
            (AccessLogField::Route, Value::Absent),
            (AccessLogField::DurationMs, Value::Millis(1.23456)),
        ],
    );
    assert_eq!(
        text,
        "{\"path\":\"/a\\\"b\\\\c\\u000a\\u00ff\",\"status\":200,\"route\":null,\"duration_ms\":1.235}\n"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["path"], "/a\"b\\c\n\u{ff}");
}

#[test]
fn text_quotes_only_values_that_need_it() {
    let text = line(
        AccessLogFormat::Text,
        &[
            (AccessLogField::Method, Value::Bytes(b"GET")),
            (AccessLogField::Host, Value::Bytes(b"a=b c")),
            (AccessLogField::RequestId, Value::Bytes(b"")),
            (AccessLogField::Upstream, Value::Absent),
            (
                AccessLogField::Client,
                Value::Addr("[::1]:80".parse().unwrap()),
            ),
        ],
    );
    assert_eq!(
        text,
        "method=GET host=\"a=b c\" request_id=\"\" upstream=- client=[::1]:80\n"
    );
}

#[test]
fn time_is_rfc3339_utc_with_millis() {
    // 2024-02-29T23:59:58.007Z: a leap day, late in the day.
    let t = UNIX_EPOCH + Duration::from_millis(1_709_251_198_007);
    let text = line(
        AccessLogFormat::Text,
        &[(AccessLogField::Time, Value::Time(t))],
    );
    assert_eq!(text, "time=2024-02-29T23:59:58.007Z\n");
    let epoch = line(
        AccessLogFormat::Text,
        &[(AccessLogField::Time, Value::Time(UNIX_EPOCH))],
    );
    assert_eq!(epoch, "time=1970-01-01T00:00:00.000Z\n");
}

#[test]
fn trace_id_only_from_a_valid_traceparent() {
    let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(trace_id(ok), Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..]));
    assert_eq!(
        trace_id(b"00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(
        trace_id(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(trace_id(b"00-4bf9"), None);
}

#[test]
fn ports_override_the_switch_and_an_empty_field_list_means_all() {
    let s = AccessLogSettings::default().with_port(8080, true);
    assert!(s.enabled_on(8080) && !s.enabled_on(8081));
    assert!(!s.layer(8081).logs());
    let s = AccessLogSettings::on().with_port(9090, false);
    assert!(s.layer(8080).logs() && !s.layer(9090).logs());
    assert_eq!(AccessLogField::ALL.len(), 20);
}
