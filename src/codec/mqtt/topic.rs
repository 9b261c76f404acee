//! Topic names (what a PUBLISH is sent to) and topic filters (what a
//! SUBSCRIBE or UNSUBSCRIBE names), and [`Topic`], a topic name that is a
//! slice of the read buffer.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use super::wire::check_string;
use super::MqttError;

/// A PUBLISH topic backed by [`Bytes`]: decoding slices it out of the read
/// buffer without copying, and a reply on the same topic can keep it without
/// allocating. Reads as a `&str`.
///
/// Always valid UTF-8. Whether it is a valid topic *name* (non-empty, no
/// `+` or `#`, no U+0000) is checked when a packet carrying it is decoded or
/// encoded, not when it is built.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Bytes);

impl Topic {
    /// A topic from a static string, without copying.
    #[must_use]
    pub const fn from_static(s: &'static str) -> Topic {
        Topic(Bytes::from_static(s.as_bytes()))
    }

    /// A topic from bytes, if they are UTF-8 (no copy).
    pub fn from_utf8(bytes: Bytes) -> Result<Topic, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Topic(bytes))
    }

    /// Wraps bytes a decoder has already checked with [`check_topic_name`].
    pub(super) fn from_checked(bytes: Bytes) -> Topic {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Topic(bytes)
    }

    /// The topic as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Every constructor checks its bytes are UTF-8 or takes them from a
        // `str`, so this never fails; checking again (topics are short) keeps
        // `unsafe` out of the codec (STYLE: unsafe only where the ring needs it).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The topic's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying buffer slice.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Topic {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Topic {
    /// Copies the string.
    fn from(s: &str) -> Topic {
        Topic(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Topic {
    /// Takes the string's buffer, no copy.
    fn from(s: String) -> Topic {
        Topic(Bytes::from(s))
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a topic name (PUBLISH, will): non-empty, an MQTT string, no
/// wildcards.
pub(super) fn check_topic_name(b: &[u8]) -> Result<&str, MqttError> {
    if b.is_empty() {
        return Err(MqttError::BadTopic("empty topic name"));
    }
    let s = check_string(b)?;
    if b.iter().any(|&c| c == b'+' || c == b'#') {
        return Err(MqttError::BadTopic("wildcard in a topic name"));
    }
    Ok(s)
}

/// Checks a topic filter (SUBSCRIBE, UNSUBSCRIBE), already an MQTT string:
/// non-empty, `+` only as a whole level, `#` only as the whole last level.
pub(super) fn check_topic_filter(s: &str) -> Result<(), MqttError> {
    if s.is_empty() {
        return Err(MqttError::BadTopic("empty topic filter"));
    }
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(MqttError::BadTopic("# not the whole last level"));
        }
        if level.contains('+') && level != "+" {
            return Err(MqttError::BadTopic("+ not a whole level"));
        }
    }
    Ok(())
}
