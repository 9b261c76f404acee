//! `[log]`: what the gate logs, where it goes (the console, a rotated file,
//! or both) and in which format, as due's `[log]`.
//!
//! This module only describes and checks the settings; `crate::logging`
//! turns them into a subscriber at start.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::units::{self, parse_choice};
use super::ConfigError;

/// `[log] level`: start-up, connection errors and warnings, not per packet.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// `[log] format`: readable on a terminal; switch to json for collectors.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;
/// `[log] terminals`: the console only, so a gate started by hand (or by
/// systemd, whose journal takes stderr) writes no files unless asked.
pub const DEFAULT_TERMINALS: &[Terminal] = &[Terminal::Console];
/// `[log] stack_level`: due's `stackLevel`. Errors are rare and are the
/// events whose call path an operator wants; a stack on every warning would
/// cost a capture on the logging thread (see `crate::logging`).
pub const DEFAULT_STACK_LEVEL: &str = "error";
/// `[log.file] path`: relative to the working directory, like due's `./log/due.log`.
pub const DEFAULT_LOG_FILE_PATH: &str = "logs/ringgate.log";
/// `[log.file] format`: files are read by collectors more than by people.
pub const DEFAULT_LOG_FILE_FORMAT: LogFormat = LogFormat::Json;
/// `[log.file] max_size`: due's `maxSize` (100M): a day of debug-level
/// logging at a few thousand connections, small enough to open in an editor.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 100 << 20;
/// `[log.file] max_age`: due's `maxAge`: a week of history.
pub const DEFAULT_LOG_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// `[log.file] rotation`: due's `rotate` default; `max_size` still caps files.
pub const DEFAULT_LOG_ROTATION: Rotation = Rotation::None;
/// `[log.file] compress`: due's default: rotated files stay greppable.
pub const DEFAULT_LOG_COMPRESS: bool = false;
/// Smallest non-zero `log.file.max_size`: below this a file holds a few lines.
pub const MIN_LOG_MAX_SIZE: u64 = 1 << 10;
/// Shortest non-zero `log.file.max_age`: rotated files are named to the
/// second, and anything shorter is more likely a wrong unit than a wish.
pub const MIN_LOG_MAX_AGE: Duration = Duration::from_secs(60);

/// Levels as written in the file, least severe first.
const LOG_LEVELS: &[(&str, &str)] = &[
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warn"),
    ("error", "error"),
];

/// `stack_level` takes the levels and `"off"`.
const STACK_LEVELS: &[(&str, &str)] = &[
    ("off", "off"),
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warn"),
    ("error", "error"),
];

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// trace | debug | info | warn | error (`RUST_LOG`, when set, wins).
    pub level: String,
    /// Format of the console terminal: text | json.
    pub format: LogFormat,
    /// Where logs go: any of console (stderr), file (`[log.file]`).
    pub terminals: Vec<Terminal>,
    /// Events at this level or more severe carry a stack backtrace; "off" = never.
    pub stack_level: String,
    /// `[log.file]`: the file terminal.
    pub file: LogFileConfig,
}

/// `[log.file]`: the file terminal, rotated and pruned.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogFileConfig {
    /// The file written; rotated files sit beside it with a time suffix.
    pub path: PathBuf,
    /// text | json.
    pub format: LogFormat,
    /// Rotate once the file holds this many bytes; 0 = no size rotation.
    #[serde(deserialize_with = "units::size")]
    pub max_size: u64,
    /// Rotated files older than this are deleted (at the next rotation); 0 = keep all.
    #[serde(deserialize_with = "units::duration")]
    pub max_age: Duration,
    /// Rotate at every hour or day boundary (local time), or not by time.
    pub rotation: Rotation,
    /// Gzip each rotated file.
    pub compress: bool,
}

/// A place logs go (`[log] terminals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// Standard error (the journal under systemd).
    Console,
    /// The file of `[log.file]`.
    File,
}

impl Terminal {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, Terminal)] =
        &[("console", Terminal::Console), ("file", Terminal::File)];
}

impl Terminal {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Terminal::Console => "console",
            Terminal::File => "file",
        }
    }
}

impl<'de> Deserialize<'de> for Terminal {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

/// `[log.file] rotation`: when a file is closed for time's sake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Only `max_size` rotates.
    None,
    /// At every full hour.
    Hour,
    /// At midnight.
    Day,
}

impl Rotation {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, Rotation)] = &[
        ("none", Rotation::None),
        ("hour", Rotation::Hour),
        ("day", Rotation::Day),
    ];
}

impl<'de> Deserialize<'de> for Rotation {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, LogFormat)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

impl LogConfig {
    /// Whether logs go to `terminal`.
    pub fn has(&self, terminal: Terminal) -> bool {
        self.terminals.contains(&terminal)
    }

    /// `stack_level` as a tracing level; `None` for "off". Call after validate.
    pub fn stack_level(&self) -> Option<tracing::Level> {
        self.stack_level.parse().ok()
    }

    /// Checks every key and lower-cases the levels (idempotent).
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        self.level = level("log.level", &self.level, LOG_LEVELS)?;
        self.stack_level = level("log.stack_level", &self.stack_level, STACK_LEVELS)?;
        if self.terminals.is_empty() {
            return Err(ConfigError::rule(
                "log.terminals",
                "name at least one terminal: \"console\" or \"file\" (or both)",
            ));
        }
        for (i, t) in self.terminals.iter().enumerate() {
            if let Some(first) = self.terminals[..i].iter().position(|x| x == t) {
                return Err(ConfigError::rule(
                    format!("log.terminals[{i}]"),
                    format!(
                        "{:?} is listed twice (also log.terminals[{first}])",
                        t.name()
                    ),
                ));
            }
        }
        self.file.validate(self.has(Terminal::File))
    }
}

impl LogFileConfig {
    fn validate(&self, used: bool) -> Result<(), ConfigError> {
        let path = &self.path;
        if used && path.as_os_str().is_empty() {
            return Err(ConfigError::rule(
                "log.file.path",
                "must name a file when log.terminals has \"file\"",
            ));
        }
        if !path.as_os_str().is_empty()
            && (path.file_name().is_none() || path.to_string_lossy().ends_with('/'))
        {
            return Err(ConfigError::rule(
                "log.file.path",
                format!("must name a file, not a directory, got {path:?}"),
            ));
        }
        if self.max_size != 0 && self.max_size < MIN_LOG_MAX_SIZE {
            return Err(ConfigError::rule(
                "log.file.max_size",
                format!(
                    "must be 0 (no size rotation) or at least {MIN_LOG_MAX_SIZE} bytes (1KiB), got {}",
                    self.max_size
                ),
            ));
        }
        if !self.max_age.is_zero() && self.max_age < MIN_LOG_MAX_AGE {
            return Err(ConfigError::rule(
                "log.file.max_age",
                format!(
                    "must be 0 (keep every file) or at least 1m, got {:?}",
                    self.max_age
                ),
            ));
        }
        Ok(())
    }
}

/// Matches a level without regard to case and returns it lower-case.
fn level(key: &str, value: &str, choices: &[(&str, &'static str)]) -> Result<String, ConfigError> {
    let lower = value.trim().to_ascii_lowercase();
    parse_choice(&lower, choices)
        .map(str::to_owned)
        .map_err(|_| {
            let wrong = parse_choice(value, choices).err();
            ConfigError::rule(key, wrong.unwrap_or_default())
        })
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LOG_LEVEL.into(),
            format: DEFAULT_LOG_FORMAT,
            terminals: DEFAULT_TERMINALS.to_vec(),
            stack_level: DEFAULT_STACK_LEVEL.into(),
            file: LogFileConfig::default(),
        }
    }
}

impl Default for LogFileConfig {
    fn default() -> Self {
        LogFileConfig {
            path: DEFAULT_LOG_FILE_PATH.into(),
            format: DEFAULT_LOG_FILE_FORMAT,
            max_size: DEFAULT_LOG_MAX_SIZE,
            max_age: DEFAULT_LOG_MAX_AGE,
            rotation: DEFAULT_LOG_ROTATION,
            compress: DEFAULT_LOG_COMPRESS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, "gate.toml").map_err(|e| e.to_string())
    }

    #[track_caller]
    fn refused(text: &str, parts: &[&str]) {
        let message = parse(text).expect_err("should be refused");
        for part in parts {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap().log;
        assert_eq!(c.terminals, [Terminal::Console]);
        assert_eq!(c.stack_level(), Some(tracing::Level::ERROR));
        assert_eq!(c.file.path, PathBuf::from("logs/ringgate.log"));
        assert_eq!(c.file.format, LogFormat::Json);
        assert_eq!(c.file.max_size, 100 << 20);
        assert_eq!(c.file.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(c.file.rotation, Rotation::None);
        assert!(!c.file.compress);
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "[log]\nterminals = [\"file\", \"console\"]\nstack_level = \"OFF\"\n\
             [log.file]\npath = \"/var/log/ringgate/gate.log\"\nformat = \"text\"\n\
             max_size = \"4KiB\"\nmax_age = \"1d\"\nrotation = \"hour\"\ncompress = true\n",
        )
        .unwrap()
        .log;
        assert_eq!(c.terminals, [Terminal::File, Terminal::Console]);
        assert_eq!(c.stack_level, "off");
        assert_eq!(c.stack_level(), None);
        assert_eq!(c.file.format, LogFormat::Text);
        assert_eq!(c.file.max_size, 4096);
        assert_eq!(c.file.max_age, Duration::from_secs(86_400));
        assert_eq!(c.file.rotation, Rotation::Hour);
        assert!(c.file.compress);
        let c = parse("[log.file]\nmax_size = 0\nmax_age = \"0s\"\n").unwrap();
        assert_eq!(
            (c.log.file.max_size, c.log.file.max_age),
            (0, Duration::ZERO)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        refused(
            "[log]\nterminals = [\"console\", \"syslog\"]\n",
            &["gate.toml:2: log.terminals[1]: ", "\"console\" or \"file\""],
        );
        refused(
            "[log]\nterminals = [\"file\", \"file\"]\n",
            &["gate.toml:2: log.terminals[1]: ", "listed twice"],
        );
        refused(
            "[log]\nterminals = []\n",
            &["log.terminals: ", "at least one"],
        );
        refused(
            "[log]\nstack_level = \"fatal\"\n",
            &["gate.toml:2: log.stack_level: ", "\"off\""],
        );
        refused(
            "[log.file]\nmax_size = \"100\"\n",
            &["gate.toml:2: log.file.max_size: ", "at least 1024"],
        );
        refused(
            "[log.file]\nmax_size = \"10 parsecs\"\n",
            &["gate.toml:2: log.file.max_size: ", "invalid size"],
        );
        refused(
            "[log.file]\nmax_age = \"7\"\n",
            &["gate.toml:2: log.file.max_age: ", "missing unit"],
        );
        refused(
            "[log.file]\nmax_age = \"30s\"\n",
            &["gate.toml:2: log.file.max_age: ", "at least 1m"],
        );
        refused(
            "[log.file]\nrotation = \"week\"\n",
            &["log.file.rotation: ", "\"none\", \"hour\" or \"day\""],
        );
        refused(
            "[log]\nterminals = [\"file\"]\n[log.file]\npath = \"\"\n",
            &["gate.toml:4: log.file.path: ", "must name a file"],
        );
        refused(
            "[log.file]\npath = \"logs/\"\n",
            &["gate.toml:2: log.file.path: ", "not a directory"],
        );
    }

    #[test]
    fn an_unused_empty_file_path_is_fine() {
        assert!(parse("[log.file]\npath = \"\"\n").is_ok());
    }
}
