//! mqant's application layer over MQTT, as its gate speaks it to clients
//! (`../shared/research/mqant-mqtt.md` §4): topics that name a module and
//! a handler, replies wrapped in `{"Trace","Error","Result"}`, and the
//! error strings mqant clients know. Pure: no sockets, no connection state.
//!
//! ```text
//!  PUBLISH  Echo/HD_Echo/7   {"a":1}     a request (3 segments): one reply, on the same topic
//!  PUBLISH  Echo/HD_Log      hello       a notification (2, or 4+ segments): no reply
//!  PUBLISH  Echo/HD_Echo/7   {"Trace":"5f0c…","Error":"","Result":{"a":1}}   the reply
//! ```
//! The MQTT packets themselves are [`crate::codec::mqtt`].

mod reply;
mod topic;

pub use reply::{wrap_reply, ResultFormat, TRACE_LEN};
pub use topic::{parse_topic, Topic, TopicError};

/// mqant's error strings, which its clients match on.
pub mod errors {
    /// The topic has fewer than two segments (mqant's literal text).
    pub const BAD_TOPIC: &str =
        "Topic must be [moduleType@moduleID]/[handler]|[moduleType@moduleID]/[handler]/[msgid]";
    /// The payload looks like a JSON object but does not parse.
    pub const BAD_JSON: &str = "The JSON format is incorrect";
    /// Too many requests of this connection in flight, or the node's link is full.
    pub const QUEUE_FULL: &str = "the work queue is full!";
    /// The node did not answer in time, or went down first.
    pub const DEADLINE: &str = "deadline exceeded";
    /// The request does not fit the node's frame limit.
    pub const TOO_LARGE: &str = "request too large";
    /// The handler needs a bound user (an authorized or stateful route).
    pub const UNAUTHORIZED: &str = "unauthorized: bind a user first";
    /// The handler is internal: nodes may call it, clients may not.
    pub const FORBIDDEN: &str = "forbidden: internal route";
    /// The handler is stateful and the user is bound to no node of it yet.
    pub const NOT_BOUND: &str = "not bound to a node of this service";
    /// The connection sent over `limits.requests_per_sec` or `bytes_per_sec`.
    pub const RATE_LIMITED: &str = "rate limited";

    /// The text for a refusal's extension code.
    pub fn refused(code: u8) -> &'static str {
        match code {
            crate::codec::ext::UNAUTHORIZED => UNAUTHORIZED,
            crate::codec::ext::FORBIDDEN => FORBIDDEN,
            crate::codec::ext::NOT_BOUND => NOT_BOUND,
            crate::codec::ext::BUSY | crate::codec::ext::INFLIGHT_FULL => QUEUE_FULL,
            crate::codec::ext::RATE_LIMITED => RATE_LIMITED,
            crate::codec::ext::TOO_LARGE => TOO_LARGE,
            _ => DEADLINE,
        }
    }

    /// No node serves the module.
    pub fn service_not_found(module: &str) -> String {
        format!("Service(type:{module}) not found")
    }

    /// The module's nodes do not announce the handler.
    pub fn function_not_found(handler: &str) -> String {
        format!("Remote function({handler}) not found")
    }
}

/// A payload mqant checks as JSON: it starts with `{` and ends with `}`.
pub fn looks_like_json_object(payload: &[u8]) -> bool {
    payload.first() == Some(&b'{') && payload.last() == Some(&b'}')
}

/// Whether `payload` is one valid JSON value.
pub fn is_json(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}
