//! The key names and the Lua scripts: each write and its PUBLISH run as one
//! script, so a subscriber never sees an event for a write that did not
//! happen, nor misses one for a write that did (while subscribed).
//!
//! The bind and purge scripts build key names from the prefix (the old
//! gate's user set, the purged users' gate keys), which a single Redis
//! allows and Redis Cluster does not.

use redis::Script;

use crate::fleet::locator::Uid;

/// Key and channel names under one prefix, in due's shapes.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    /// `{p}:user:{uid}:gate` — STRING `"gate|session|epoch"`.
    pub(super) fn user_gate(&self, uid: Uid) -> String {
        format!("{}:user:{uid}:gate", self.prefix)
    }
    /// `{p}:user:{uid}:node` — HASH service → node id.
    pub(super) fn user_node(&self, uid: Uid) -> String {
        format!("{}:user:{uid}:node", self.prefix)
    }
    /// `{p}:gate:{gate}:users` — SET of uids bound on that gate.
    pub(super) fn gate_users(&self, gate: &str) -> String {
        format!("{}:gate:{gate}:users", self.prefix)
    }
    /// `{p}:session:{uid}` — HASH of session settings, with a TTL.
    pub(super) fn session(&self, uid: Uid) -> String {
        format!("{}:session:{uid}", self.prefix)
    }
    /// `{p}:cluster:gate:event` — BindGate / UnbindGate events.
    pub(super) fn gate_channel(&self) -> String {
        format!("{}:cluster:gate:event", self.prefix)
    }
    /// `{p}:cluster:node:event` — BindNode / UnbindNode events.
    pub(super) fn node_channel(&self) -> String {
        format!("{}:cluster:node:event", self.prefix)
    }
}

/// KEYS: user gate key, new gate's user set, gate channel.
/// ARGV: new value, uid, event JSON, prefix, new gate id.
/// Returns the previous value (nil if none). An identical value is left
/// as it is, unpublished, which also makes a retried bind harmless.
const BIND_GATE: &str = r#"
local old = redis.call('GET', KEYS[1])
if old == ARGV[1] then return old end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if old then
  local og = string.match(old, '^(.*)|%d+|%d+$')
  if og and og ~= ARGV[5] then
    redis.call('SREM', ARGV[4] .. ':gate:' .. og .. ':users', ARGV[2])
  end
end
redis.call('PUBLISH', KEYS[3], ARGV[3])
return old
"#;

/// KEYS: user gate key, the binding's gate user set, gate channel.
/// ARGV: expected value, uid, event JSON. Returns 1 if it deleted.
const UNBIND_GATE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"#;

/// KEYS: user node hash, node channel. ARGV: service, node, event JSON.
/// Returns the previous node (nil if none); the same node is not rewritten.
const BIND_NODE: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return old end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return old
"#;

/// KEYS: user node hash, node channel. ARGV: service, node, event JSON.
/// Deletes that one field if it names the node; returns 1 if it did.
const UNBIND_NODE: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"#;

/// KEYS: the dead gate's user set, gate channel.
/// ARGV: prefix, gate id, gate id as a JSON string, batch size.
/// Pops up to a batch of uids; releases each whose gate key still names
/// the gate and publishes its UnbindGate (wire.rs's JSON, written by hand).
/// Returns {released, uids left in the set}: call again until none are.
const PURGE_GATE: &str = r#"
local uids = redis.call('SPOP', KEYS[1], ARGV[4])
local released = 0
for _, uid in ipairs(uids) do
  if string.match(uid, '^-?%d+$') then
    local key = ARGV[1] .. ':user:' .. uid .. ':gate'
    local v = redis.call('GET', key)
    if v then
      local g, sid, epoch = string.match(v, '^(.*)|(%d+)|(%d+)$')
      if g == ARGV[2] then
        redis.call('DEL', key)
        redis.call('PUBLISH', KEYS[2], '{"uid":' .. uid .. ',"type":3,"insID":' .. ARGV[3]
          .. ',"insKind":"gate","insName":"","sid":' .. sid .. ',"epoch":' .. epoch .. '}')
        released = released + 1
      end
    end
  end
end
return {released, redis.call('SCARD', KEYS[1])}
"#;

/// How many users one purge script call handles, so that purging a big
/// gate does not block Redis for long in one go.
pub(super) const PURGE_BATCH: usize = 256;

/// The scripts, hashed once; [`redis::Script`] runs EVALSHA and loads the
/// script on NOSCRIPT (after a Redis restart), then runs it again.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) bind_gate: Script,
    pub(super) unbind_gate: Script,
    pub(super) bind_node: Script,
    pub(super) unbind_node: Script,
    pub(super) purge_gate: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            bind_gate: Script::new(BIND_GATE),
            unbind_gate: Script::new(UNBIND_GATE),
            bind_node: Script::new(BIND_NODE),
            unbind_node: Script::new(UNBIND_NODE),
            purge_gate: Script::new(PURGE_GATE),
        }
    }
}
