//! Hand-encoded `grpc.health.v1` messages and gRPC length-prefixed framing.
//!
//! The two messages are tiny, so they are written and read directly instead of pulling in
//! a protobuf crate:
//!
//! ```text
//! message HealthCheckRequest  { string service = 1; }
//! message HealthCheckResponse { ServingStatus status = 1; }   // SERVING = 1
//! ```
//!
//! A gRPC message on the wire is one byte "compressed" flag, a 4-byte big-endian length,
//! then the message.

use bytes::{BufMut, Bytes, BytesMut};

use super::CheckError;

/// The path of the health `Check` method.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `ServingStatus.SERVING`.
pub(crate) const SERVING: u64 = 1;

/// A framed `HealthCheckRequest { service }`.
pub(crate) fn encode_request(service: &str) -> Bytes {
    let mut msg = BytesMut::with_capacity(service.len() + 6);
    if !service.is_empty() {
        // Field 1, wire type 2 (length-delimited). proto3 omits an empty string.
        msg.put_u8(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    frame(&msg)
}

/// Wraps `msg` in gRPC length-prefixed framing (uncompressed).
pub(crate) fn frame(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.len() + 5);
    out.put_u8(0);
    // Health messages are a few bytes; saturate rather than truncate on absurd input.
    out.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    out.put_slice(msg);
    out.freeze()
}

/// Reads the first message out of a gRPC response body.
pub(crate) fn unframe(body: &[u8]) -> Result<&[u8], CheckError> {
    let (&flag, rest) = body
        .split_first()
        .ok_or(CheckError::Malformed("empty body"))?;
    if flag != 0 {
        return Err(CheckError::Malformed("compressed message"));
    }
    let len: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(CheckError::Malformed("truncated frame header"))?;
    let len = u32::from_be_bytes(len) as usize;
    rest.get(4..4 + len)
        .ok_or(CheckError::Malformed("truncated message"))
}

/// Decodes `HealthCheckResponse.status` (0, UNKNOWN, when absent), skipping unknown fields.
pub(crate) fn decode_status(mut msg: &[u8]) -> Result<u64, CheckError> {
    let mut status = 0;
    while !msg.is_empty() {
        let key = get_varint(&mut msg)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = get_varint(&mut msg)?;
                if field == 1 {
                    status = v;
                }
            }
            1 => {
                msg = msg
                    .get(8..)
                    .ok_or(CheckError::Malformed("truncated fixed64"))?
            }
            2 => {
                let len = usize::try_from(get_varint(&mut msg)?)
                    .map_err(|_| CheckError::Malformed("length overflow"))?;
                msg = msg
                    .get(len..)
                    .ok_or(CheckError::Malformed("truncated field"))?;
            }
            5 => {
                msg = msg
                    .get(4..)
                    .ok_or(CheckError::Malformed("truncated fixed32"))?
            }
            _ => return Err(CheckError::Malformed("unsupported wire type")),
        }
    }
    Ok(status)
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, CheckError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or(CheckError::Malformed("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CheckError::Malformed("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding_matches_protobuf() {
        // protoc --encode: service: "a" => 0a 01 61
        assert_eq!(&encode_request("a")[..], &[0, 0, 0, 0, 3, 0x0a, 1, b'a']);
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        let long = "x".repeat(200);
        let framed = encode_request(&long);
        // 200 = 0xc8 => varint c8 01.
        assert_eq!(&framed[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
    }

    #[test]
    fn response_decoding() {
        assert_eq!(decode_status(&[0x08, 0x01]).unwrap(), SERVING);
        assert_eq!(decode_status(&[0x08, 0x02]).unwrap(), 2);
        assert_eq!(decode_status(&[]).unwrap(), 0);
        // Unknown fields of every wire type before the status are skipped.
        let msg = [
            0x10, 0x96, 0x01, // field 2 varint 150
            0x1a, 0x02, b'h', b'i', // field 3 bytes
            0x21, 0, 0, 0, 0, 0, 0, 0, 0, // field 4 fixed64
            0x2d, 0, 0, 0, 0, // field 5 fixed32
            0x08, 0x01,
        ];
        assert_eq!(decode_status(&msg).unwrap(), SERVING);
        assert!(decode_status(&[0x08]).is_err());
        assert!(decode_status(&[0x0a, 0x05, 1]).is_err());
        assert!(decode_status(&[0x0b]).is_err());
    }

    #[test]
    fn framing_round_trip_and_errors() {
        let framed = frame(&[0x08, 0x01]);
        assert_eq!(unframe(&framed).unwrap(), &[0x08, 0x01]);
        assert!(unframe(&[]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert!(unframe(&[0, 0, 0]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 3, 1]).is_err());
    }
}
