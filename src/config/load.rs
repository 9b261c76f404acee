//! Reading the file: TOML text → [`Config`], with errors that point at the
//! file, line and key.

use std::io;
use std::path::Path;

use super::{Config, DEFAULT_PATH, DEFAULT_TOML};

/// Where [`Config::load_or_default`] says the embedded default came from.
pub const EMBEDDED_ORIGIN: &str = "embedded default";

/// Why a configuration was refused. `Display` gives one line:
/// `origin[:line]: key: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read the configuration: {error}")]
    Read {
        /// The path as given.
        origin: String,
        /// What the OS said (already in the message, so not chained as a source).
        error: io::Error,
    },
    /// The text is not valid TOML.
    #[error("{}invalid TOML: {message}", location(.origin, .line))]
    Syntax {
        /// The file (or "embedded default").
        origin: String,
        /// 1-based line of the error, when the parser knows it.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown, or its value has the wrong type or form
    /// (`interval = "10 parsecs"`, `mechanism = "pong"`).
    #[error("{}{key}: {message}", location(.origin, .line))]
    Invalid {
        /// The file (or "embedded default").
        origin: String,
        /// 1-based line of the key or value, when known.
        line: Option<usize>,
        /// Dotted key path, `network.tcp.heartbeat.mechanism`, `nodes[1].addr`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value is well-formed but out of range or inconsistent with another
    /// (found by [`Config::validate`], which leaves `origin` empty and `line`
    /// unset; the loader fills both in).
    #[error("{}{key}: {message}", location(.origin, .line))]
    Validation {
        /// The file, or empty when `validate` was called directly.
        origin: String,
        /// 1-based line of the key, when it is written in the file.
        line: Option<usize>,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A rule broken at `key`, for `validate`.
    pub(super) fn rule(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Validation {
            origin: String::new(),
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The dotted key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::Validation { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// Fills in the file and, by looking the key up in `text`, the line.
    fn locate(mut self, at: &str, text: &str) -> Self {
        if let ConfigError::Validation {
            origin, line, key, ..
        } = &mut self
        {
            *origin = at.to_owned();
            *line = line_of_key(text, key);
        }
        self
    }
}

/// `"origin:line: "`, `"origin: "` or nothing.
fn location(origin: &str, line: &Option<usize>) -> String {
    match (origin, line) {
        ("", _) => String::new(),
        (origin, Some(line)) => format!("{origin}:{line}: "),
        (origin, None) => format!("{origin}: "),
    }
}

impl Config {
    /// Parses and validates `text`; `origin` names it in errors (a path, or
    /// "embedded default").
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| syntax(e, text, origin))?;
        let mut config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| invalid(e, text, origin))?;
        config.validate().map_err(|e| e.locate(origin, text))?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            origin: origin.clone(),
            error,
        })?;
        Config::from_toml(&text, &origin)
    }

    /// Loads `path`; without one, loads `etc/ringgate.toml` if it exists in
    /// the working directory, else the embedded [`DEFAULT_TOML`]. Also returns
    /// where the configuration came from, for the start-up log line.
    pub fn load_or_default(path: Option<&Path>) -> Result<(Config, String), ConfigError> {
        let Some(path) = Config::file_to_load(path) else {
            let config = Config::from_toml(DEFAULT_TOML, EMBEDDED_ORIGIN)?;
            return Ok((config, EMBEDDED_ORIGIN.to_owned()));
        };
        Ok((Config::load(path)?, path.display().to_string()))
    }

    /// The file [`Config::load_or_default`] reads for `path`: `path` itself,
    /// else `etc/ringgate.toml` if it exists; `None` for the embedded
    /// default. A reload re-reads the same file.
    pub fn file_to_load(path: Option<&Path>) -> Option<&Path> {
        match path {
            Some(path) => Some(path),
            None if Path::new(DEFAULT_PATH).is_file() => Some(Path::new(DEFAULT_PATH)),
            None => None,
        }
    }
}

/// Turns a TOML parse error into [`ConfigError::Syntax`], quoting the text
/// it points at when that is short (toml says "duplicate key" but not which).
fn syntax(err: toml::de::Error, text: &str, origin: &str) -> ConfigError {
    let mut message = requote(&one_line(err.message()));
    let span = err.span();
    if let Some(at) = span.as_ref().and_then(|s| text.get(s.clone())) {
        if !at.trim().is_empty() && at.len() <= 40 && !at.contains('\n') {
            message.push_str(&format!(" at {:?}", at.trim()));
        }
    }
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line: span.map(|s| line_at(text, s.start)),
        message,
    }
}

/// Turns a deserialization error into [`ConfigError::Invalid`] with the key
/// path; serde's "unknown field" becomes a path that ends in the unknown key.
fn invalid(
    err: serde_path_to_error::Error<toml::de::Error>,
    text: &str,
    origin: &str,
) -> ConfigError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let line = inner.span().map(|s| line_at(text, s.start));
    let message = one_line(inner.message());
    let (key, message) = match unknown_field(&message) {
        // serde_path_to_error already ends the path in the unknown key; older
        // versions stopped at its table, so add it when it is missing.
        Some((field, expected)) => (
            if path == field || path.ends_with(&format!(".{field}")) {
                path
            } else {
                join_key(&path, field)
            },
            format!("unknown key, expected {}", requote(expected)),
        ),
        None => (
            if path == "." { String::new() } else { path },
            plain_types(&requote(&message)),
        ),
    };
    let key = if key.is_empty() {
        "(top level)".to_owned()
    } else {
        key
    };
    ConfigError::Invalid {
        origin: origin.to_owned(),
        line,
        key,
        message,
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a`", or "there are no fields") into `x` and what is expected.
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .strip_prefix(", expected ")
        .unwrap_or("nothing (this table takes no keys)");
    Some((field, expected))
}

/// serde quotes names and values in backticks: values (`-1`, `true`) lose
/// them, names get the double quotes used everywhere else in messages.
fn requote(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    out.push_str(parts.next().unwrap_or_default());
    let mut quoted = true;
    for part in parts {
        let is_value = part.parse::<f64>().is_ok() || part == "true" || part == "false";
        if !quoted || is_value {
            out.push_str(part);
        } else {
            out.push_str(&format!("{part:?}"));
        }
        quoted = !quoted;
    }
    out
}

/// Serde's words for TOML's: "struct TcpConfig" is a table, a sequence an array.
fn plain_types(message: &str) -> String {
    let message = message.replace("expected a sequence", "expected an array");
    match message.split_once("expected struct ") {
        Some((head, _)) => format!("{head}expected a table"),
        None => message,
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path == "." || path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn one_line(message: &str) -> String {
    message.trim().replace('\n', "; ")
}

/// 1-based line of byte offset `at` in `text`.
fn line_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where `key` (`a.b`, `nodes[1].addr`) is written in `text`, or
/// where its nearest written parent is; `None` if nothing of it is written.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let root = toml::de::DeValue::Table(root.into_inner());
    let mut value = &root;
    let mut found = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, index)) => (name, index.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(mut next) = value.get(name) else {
            break;
        };
        if let Some(index) = index {
            match next.get_ref().get(index) {
                Some(item) => next = item,
                None => break,
            }
        }
        found = Some(next.span());
        value = next.get_ref();
    }
    found.map(|s| line_at(text, s.start))
}
