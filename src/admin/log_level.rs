//! Changing the log filter of a running gate (`PUT /api/log-level`, and a
//! reload whose `[log] level` changed: `crate::reload`).
//!
//! The filter belongs to whoever installed the tracing subscriber: the
//! `ringgate` binary builds it with a reload handle and hands the handle
//! here with [`set_log_reload`]. A gate embedded in another program (or a
//! test) installs none, and the endpoint then says so.

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::{reload, EnvFilter};

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();
static CURRENT: Mutex<String> = Mutex::new(String::new());

/// Installs the handle that replaces the process's log filter; `current`
/// is the filter in force now (shown by `GET /api/info`). Only the first
/// call counts (there is one subscriber per process).
pub fn set_log_reload<S>(handle: reload::Handle<EnvFilter, S>, current: &str)
where
    S: 'static,
{
    let f: Reload = Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()));
    if RELOAD.set(f).is_ok() {
        *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = current.to_owned();
    }
}

/// Why the level could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// Not a level or an `EnvFilter` directive list.
    #[error("not a log level or filter ({0}); use trace, debug, info, warn, error or directives such as \"info,ringgate::shard=debug\"")]
    Invalid(String),
    /// No reload handle was installed.
    #[error(
        "this process did not install a reloadable log filter (only the ringgate binary does)"
    )]
    Unsupported,
    /// The subscriber is gone.
    #[error("reloading the log filter failed: {0}")]
    Failed(String),
}

/// Replaces the log filter with `spec` (a level, or `EnvFilter` directives)
/// and logs that the admin port did.
pub fn set_level(spec: &str) -> Result<(), LogLevelError> {
    replace(spec)?;
    tracing::info!(
        filter = spec.trim(),
        "log filter changed from the admin port"
    );
    Ok(())
}

/// Replaces the log filter with `spec`, saying nothing: the caller logs
/// why (the admin port, a reload).
pub fn replace(spec: &str) -> Result<(), LogLevelError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(LogLevelError::Invalid("empty".into()));
    }
    // A bare word must be a level: EnvFilter would take it for a target name.
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if !spec.contains(['=', ',']) && !LEVELS.contains(&spec.to_ascii_lowercase().as_str()) {
        return Err(LogLevelError::Invalid(format!("{spec:?} is not a level")));
    }
    let filter = EnvFilter::try_new(spec).map_err(|e| LogLevelError::Invalid(e.to_string()))?;
    let reload = RELOAD.get().ok_or(LogLevelError::Unsupported)?;
    reload(filter).map_err(LogLevelError::Failed)?;
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = spec.to_owned();
    Ok(())
}

/// The filter in force, if a reload handle was installed.
pub fn current() -> Option<String> {
    RELOAD.get()?;
    Some(CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone())
}
