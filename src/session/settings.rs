//! A session's small string key → value settings (mqant's `Session.Settings`).
//! Empty settings cost one pointer; limits keep a node from growing a
//! session without bound.

use std::collections::HashMap;

/// Why a settings change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// More keys than `session.max_settings`.
    #[error("a session holds at most {max} settings")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// One key + value longer than `session.max_setting_bytes`.
    #[error("setting {key:?} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// The key.
        key: String,
        /// Its key + value length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Settings of one session.
///
/// Boxed on purpose: an empty `HashMap` is 48 bytes, `Option<Box<_>>` is 8,
/// and most sessions never get a setting.
#[allow(clippy::box_collection)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings(Option<Box<HashMap<String, String>>>);

impl Settings {
    /// Applies removals, then sets, atomically: on error nothing changes.
    pub fn apply(
        &mut self,
        set: HashMap<String, String>,
        remove: &[String],
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<(), SettingsError> {
        for (k, v) in &set {
            if k.len() + v.len() > max_bytes {
                return Err(SettingsError::TooLong {
                    key: k.clone(),
                    len: k.len() + v.len(),
                    max: max_bytes,
                });
            }
        }
        let mut next = self.0.as_deref().cloned().unwrap_or_default();
        for k in remove {
            next.remove(k);
        }
        next.extend(set);
        if next.len() > max_keys {
            return Err(SettingsError::TooMany { max: max_keys });
        }
        self.0 = (!next.is_empty()).then(|| Box::new(next));
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    /// A copy of every setting (for delivery to nodes).
    pub fn to_map(&self) -> HashMap<String, String> {
        self.0.as_deref().cloned().unwrap_or_default()
    }

    /// Number of settings.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// No settings.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_remove_and_limits() {
        let mut s = Settings::default();
        assert!(s.is_empty());
        s.apply(kv(&[("room", "mqant"), ("role", "mage")]), &[], 4, 64)
            .unwrap();
        assert_eq!(s.get("room"), Some("mqant"));
        s.apply(kv(&[("room", "lobby")]), &["role".into()], 4, 64)
            .unwrap();
        assert_eq!(
            (s.get("room"), s.get("role"), s.len()),
            (Some("lobby"), None, 1)
        );
        assert_eq!(
            s.apply(
                kv(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
                &[],
                4,
                64
            ),
            Err(SettingsError::TooMany { max: 4 })
        );
        assert_eq!(s.len(), 1, "a refused change changes nothing");
        assert!(matches!(
            s.apply(kv(&[("k", &"x".repeat(100))]), &[], 4, 64),
            Err(SettingsError::TooLong { .. })
        ));
        s.apply(HashMap::new(), &["room".into()], 4, 64).unwrap();
        assert!(s.is_empty(), "removing the last key frees the map");
    }
}
