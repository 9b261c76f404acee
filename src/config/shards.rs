//! `[shards]`'s loop knobs, per shard: the section's values, overridden
//! for single shards by `[[shards.overrides]]` (by shard index or by the
//! core it runs on), and the cores of the gate's own control threads.

use std::time::Duration;

use serde::Deserialize;

use super::validate::{MAX_BUFFER_COUNT, MAX_RING_ENTRIES, MIN_BUFFER_SIZE, MIN_RING_ENTRIES};
use super::{units, ConfigError, ShardsConfig};

/// Longest `busy_poll`: it spins a core.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);
/// Longest `batch_wait`: it delays replies by up to that.
pub const MAX_BATCH_WAIT: Duration = Duration::from_millis(1);

/// `[[shards.overrides]]`: the knobs of one shard that differ from
/// `[shards]`. Name the shard by `shard` (its index) or `core` (the core it
/// is pinned to), not both; a knob left out keeps the section's value.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ShardOverride {
    /// Index of the shard (0 = the first of `cores`).
    pub shard: Option<usize>,
    /// The core the shard runs on.
    pub core: Option<usize>,
    /// `ring_entries` for this shard.
    pub ring_entries: Option<u32>,
    /// `buffer_count` for this shard.
    pub buffer_count: Option<u16>,
    /// `buffer_size` for this shard.
    #[serde(deserialize_with = "units::opt_size")]
    pub buffer_size: Option<u32>,
    /// `busy_poll` for this shard.
    #[serde(deserialize_with = "units::opt_duration")]
    pub busy_poll: Option<Duration>,
    /// `batch_wait` for this shard.
    #[serde(deserialize_with = "units::opt_duration")]
    pub batch_wait: Option<Duration>,
}

/// The loop knobs one shard runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardKnobs {
    /// Submission queue entries.
    pub ring_entries: u32,
    /// Provided read buffers.
    pub buffer_count: u16,
    /// Bytes per read buffer.
    pub buffer_size: u32,
    /// Poll this long before sleeping.
    pub busy_poll: Duration,
    /// Let completions gather this long before waking.
    pub batch_wait: Duration,
}

impl ShardsConfig {
    /// The knobs of shard `shard` (an index into `cores`), after validation.
    pub fn knobs(&self, shard: usize) -> ShardKnobs {
        let mut k = ShardKnobs {
            ring_entries: self.ring_entries,
            buffer_count: self.buffer_count,
            buffer_size: self.buffer_size,
            busy_poll: self.busy_poll,
            batch_wait: self.batch_wait,
        };
        let core = self.cores.get(shard).copied();
        for o in &self.overrides {
            if o.shard == Some(shard) || (o.core.is_some() && o.core == core) {
                k.ring_entries = o.ring_entries.unwrap_or(k.ring_entries);
                k.buffer_count = o.buffer_count.unwrap_or(k.buffer_count);
                k.buffer_size = o.buffer_size.unwrap_or(k.buffer_size);
                k.busy_poll = o.busy_poll.unwrap_or(k.busy_poll);
                k.batch_wait = o.batch_wait.unwrap_or(k.batch_wait);
            }
        }
        k
    }

    /// Checks the knobs of the section and of every override (after
    /// `cores` is resolved), and `control_cores`.
    pub(super) fn validate_knobs(&self, available: &[usize]) -> Result<(), ConfigError> {
        check_knobs("shards", &self.knobs_of_section())?;
        let mut named = std::collections::HashMap::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let key = format!("shards.overrides[{i}]");
            let shard = match (o.shard, o.core) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(ConfigError::rule(
                        key,
                        "name the shard by exactly one of `shard` (its index) or `core`",
                    ))
                }
                (Some(s), None) if s >= self.cores.len() => {
                    return Err(ConfigError::rule(
                        format!("{key}.shard"),
                        format!("shard {s} does not exist ({} shards)", self.cores.len()),
                    ))
                }
                (Some(s), None) => s,
                (None, Some(c)) => self.cores.iter().position(|&x| x == c).ok_or_else(|| {
                    ConfigError::rule(
                        format!("{key}.core"),
                        format!(
                            "no shard runs on core {c} (shards.cores = {:?})",
                            self.cores
                        ),
                    )
                })?,
            };
            if let Some(first) = named.insert(shard, i) {
                return Err(ConfigError::rule(
                    key,
                    format!("shard {shard} is already overridden by shards.overrides[{first}]"),
                ));
            }
            check_knobs(&key, &self.knobs(shard))?;
        }
        for &c in &self.control_cores {
            if !available.contains(&c) {
                return Err(ConfigError::rule(
                    "shards.control_cores",
                    format!("core {c} is not available to this process (available: {available:?})"),
                ));
            }
        }
        Ok(())
    }

    fn knobs_of_section(&self) -> ShardKnobs {
        ShardKnobs {
            ring_entries: self.ring_entries,
            buffer_count: self.buffer_count,
            buffer_size: self.buffer_size,
            busy_poll: self.busy_poll,
            batch_wait: self.batch_wait,
        }
    }
}

/// The range rules of the knobs, reported under `prefix` (`shards` or
/// `shards.overrides[i]`).
fn check_knobs(prefix: &str, k: &ShardKnobs) -> Result<(), ConfigError> {
    if !k.ring_entries.is_power_of_two()
        || !(MIN_RING_ENTRIES..=MAX_RING_ENTRIES).contains(&k.ring_entries)
    {
        return Err(ConfigError::rule(
            format!("{prefix}.ring_entries"),
            format!(
                "must be a power of two from {MIN_RING_ENTRIES} to {MAX_RING_ENTRIES}, got {}",
                k.ring_entries
            ),
        ));
    }
    if !k.buffer_count.is_power_of_two() || k.buffer_count > MAX_BUFFER_COUNT {
        return Err(ConfigError::rule(
            format!("{prefix}.buffer_count"),
            format!(
                "must be a power of two from 1 to {MAX_BUFFER_COUNT}, got {}",
                k.buffer_count
            ),
        ));
    }
    if k.buffer_size < MIN_BUFFER_SIZE {
        return Err(ConfigError::rule(
            format!("{prefix}.buffer_size"),
            format!(
                "must be at least {MIN_BUFFER_SIZE} bytes, got {}",
                k.buffer_size
            ),
        ));
    }
    if k.busy_poll > MAX_BUSY_POLL {
        return Err(ConfigError::rule(
            format!("{prefix}.busy_poll"),
            format!(
                "must be at most 10ms (it spins a core), got {:?}",
                k.busy_poll
            ),
        ));
    }
    if k.batch_wait > MAX_BATCH_WAIT {
        return Err(ConfigError::rule(
            format!("{prefix}.batch_wait"),
            format!(
                "must be at most 1ms (it delays replies by up to that), got {:?}",
                k.batch_wait
            ),
        ));
    }
    Ok(())
}
