//! mqant's reply wrapper: `{"Trace":"<16 hex>","Error":"<text>","Result":<value>}`,
//! in that field order and without whitespace, as Go's `encoding/json` writes it.

use base64::Engine;
use bytes::BytesMut;

pub use crate::link::proto::ResultFormat;

/// Characters of a trace id (16 lowercase hex digits, fixed per connection).
pub const TRACE_LEN: usize = 16;

/// Appends the wrapper for a reply to `out`. `error` empty means success.
/// With [`ResultFormat::Raw`] (and no error) the payload is appended as is.
pub fn wrap_reply(
    trace: &str,
    error: &str,
    payload: &[u8],
    format: ResultFormat,
    out: &mut BytesMut,
) {
    let format = match format {
        ResultFormat::ResultRaw if error.is_empty() => {
            out.extend_from_slice(payload);
            return;
        }
        ResultFormat::ResultAuto if super::is_json(payload) => ResultFormat::ResultJson,
        ResultFormat::ResultAuto | ResultFormat::ResultRaw => ResultFormat::ResultBytes,
        f => f,
    };
    out.extend_from_slice(b"{\"Trace\":");
    json_string(trace, out);
    out.extend_from_slice(b",\"Error\":");
    json_string(error, out);
    out.extend_from_slice(b",\"Result\":");
    match format {
        _ if !error.is_empty() && payload.is_empty() => out.extend_from_slice(b"null"),
        ResultFormat::ResultJson if super::is_json(payload) => out.extend_from_slice(payload),
        ResultFormat::ResultString => json_string(&String::from_utf8_lossy(payload), out),
        // Bytes, and JSON that is not: base64, as mqant sends a []byte.
        _ => {
            out.extend_from_slice(b"\"");
            let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
            out.extend_from_slice(b64.as_bytes());
            out.extend_from_slice(b"\"");
        }
    }
    out.extend_from_slice(b"}");
}

/// A JSON string literal, escaping what JSON requires (and `<>&` as Go does).
fn json_string(s: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"\"");
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(error: &str, payload: &[u8], f: ResultFormat) -> String {
        let mut out = BytesMut::new();
        wrap_reply("00112233aabbccdd", error, payload, f, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn results_are_wrapped_as_mqant_wraps_them() {
        let t = r#"{"Trace":"00112233aabbccdd","Error":"#;
        assert_eq!(
            wrap("", br#"{"a":1}"#, ResultFormat::ResultAuto),
            format!(r#"{t}"","Result":{{"a":1}}}}"#)
        );
        assert_eq!(
            wrap("", b"\x00\x01hi", ResultFormat::ResultAuto),
            format!(r#"{t}"","Result":"AAFoaQ=="}}"#)
        );
        assert_eq!(
            wrap("", b"pushed", ResultFormat::ResultString),
            format!(r#"{t}"","Result":"pushed"}}"#)
        );
        assert_eq!(
            wrap("", b"{bad json}", ResultFormat::ResultJson),
            format!(r#"{t}"","Result":"e2JhZCBqc29ufQ=="}}"#),
            "JSON that is not goes as bytes rather than break the wrapper"
        );
        assert_eq!(wrap("", b"raw \x01", ResultFormat::ResultRaw), "raw \x01");
    }

    #[test]
    fn the_documented_request_and_reply_bytes_hold() {
        use crate::codec::mqtt::encode_publish;
        let mut req = BytesMut::new();
        encode_publish("Echo/HD_Echo/7", br#"{"a":1}"#, &mut req).unwrap();
        assert_eq!(&req[..4], [0x30, 0x17, 0x00, 0x0e]);
        let mut body = BytesMut::new();
        wrap_reply(
            "9e3779b97f4a7c15",
            "",
            br#"{"a":1}"#,
            ResultFormat::ResultAuto,
            &mut body,
        );
        assert_eq!(
            &body[..],
            br#"{"Trace":"9e3779b97f4a7c15","Error":"","Result":{"a":1}}"#
        );
        let mut reply = BytesMut::new();
        encode_publish("Echo/HD_Echo/7", &body, &mut reply).unwrap();
        assert_eq!(&reply[..2], [0x30, 0x48]);
        assert_eq!(&reply[2 + 2 + 14..], &body[..]);
    }

    #[test]
    fn errors_carry_their_text_and_a_null_result() {
        assert_eq!(
            wrap("deadline exceeded", b"", ResultFormat::ResultRaw),
            r#"{"Trace":"00112233aabbccdd","Error":"deadline exceeded","Result":null}"#
        );
        let s = wrap("say \"<no>\"\n", b"", ResultFormat::ResultAuto);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["Error"], "say \"<no>\"\n");
        assert!(s.contains("\\u003cno\\u003e"), "{s}");
    }
}
