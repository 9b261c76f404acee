//! The subscription thread: one SUBSCRIBE connection of its own to both
//! event channels, reconnected forever.
//!
//! ```text
//! connect ─▶ SUBSCRIBE gate+node ─▶ Resync ─▶ messages … ─▶ error
//!    ▲            (confirmed)                                  │
//!    └──── sleep 100 ms, 200, 400 … 2 s (reset on success) ◀───┘
//! ```
//! `Resync` is sent only once the server has confirmed the subscription, so
//! every event published after it is delivered after it. A quiet connection
//! is PINGed, so a half-open TCP connection is noticed too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult, Value};
use tracing::{debug, info, warn};

use super::wire;
use crate::fleet::locator::Notice;

/// First wait before reconnecting; doubles per failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long one read waits before checking whether the subscription was
/// dropped: bounds how long dropping it takes.
const STOP_POLL: Duration = Duration::from_millis(200);
/// A connection silent this long is PINGed.
const PING_AFTER: Duration = Duration::from_secs(10);

/// What the thread needs to (re)subscribe.
pub(super) struct Subscriber {
    pub(super) client: Client,
    pub(super) addr: String,
    pub(super) channels: [String; 2],
    pub(super) connect_timeout: Duration,
    pub(super) io_timeout: Duration,
}

impl Subscriber {
    /// The thread's body: returns soon after `stop` is set.
    pub(super) fn run(self, mut on_notice: Box<dyn FnMut(Notice) + Send>, stop: &AtomicBool) {
        let addr = self.addr.as_str();
        let mut backoff = BACKOFF_MIN;
        let mut down_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            match self.connect() {
                Ok(mut con) => {
                    if let Some(since) = down_since.take() {
                        info!(%addr, down_for = ?since.elapsed(), "locator subscription restored");
                    }
                    backoff = BACKOFF_MIN;
                    match self.listen(&mut con, &mut on_notice, stop) {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(%addr, error = %e, "locator subscription lost; reconnecting");
                            down_since = Some(Instant::now());
                        }
                    }
                }
                Err(e) if down_since.is_none() => {
                    warn!(%addr, error = %e, "locator cannot subscribe; retrying");
                    down_since = Some(Instant::now());
                }
                Err(e) => debug!(%addr, error = %e, "locator subscribe retry failed"),
            }
            sleep_unless_stopped(backoff, stop);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        con.set_write_timeout(Some(self.io_timeout))?;
        con.set_read_timeout(Some(self.io_timeout))?;
        Ok(con)
    }

    /// Subscribes, sends `Resync`, then delivers messages until an error
    /// (returned) or `stop` (`Ok`).
    fn listen(
        &self,
        con: &mut Connection,
        on_notice: &mut Box<dyn FnMut(Notice) + Send>,
        stop: &AtomicBool,
    ) -> Result<(), RedisError> {
        let mut ps = con.as_pubsub();
        ps.subscribe(&self.channels)?;
        ps.set_read_timeout(Some(STOP_POLL))?;
        on_notice(Notice::Resync);
        let mut heard = Instant::now();
        let mut warned_foreign = false;
        while !stop.load(Ordering::Relaxed) {
            let msg = match ps.get_message() {
                Ok(msg) => msg,
                Err(e) if e.is_timeout() => {
                    if heard.elapsed() >= PING_AFTER {
                        ps.set_read_timeout(Some(self.io_timeout))?;
                        ps.ping::<Value>()?;
                        ps.set_read_timeout(Some(STOP_POLL))?;
                        heard = Instant::now();
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            heard = Instant::now();
            match wire::decode(msg.get_payload_bytes()) {
                Ok(ev) => on_notice(Notice::Event(ev)),
                Err(why) if !warned_foreign => {
                    warned_foreign = true;
                    warn!(addr = %self.addr, channel = msg.get_channel_name(), %why,
                        "ignoring a locator event that is not ours (further ones at debug)");
                }
                Err(why) => debug!(addr = %self.addr, %why, "ignoring a foreign locator event"),
            }
        }
        Ok(())
    }
}

/// Sleeps `d` in steps short enough to notice `stop`.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
