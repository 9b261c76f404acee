//! [`RedisOptions`]: where and how to reach Redis, with its defaults.

use std::fmt;
use std::time::Duration;

/// Default server: the local one, database 0.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";
/// Default key prefix: due's is `due:locate`; ours differs so that both can
/// share a server without reading each other's differently shaped values.
pub const DEFAULT_PREFIX: &str = "ringgate:locate";
/// Default connect timeout: long enough for a loaded server, short enough
/// that a control thread notices an outage quickly.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default read/write timeout of one call.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and how to reach Redis. `Default` gives the `DEFAULT_*` values.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port/db` (default [`DEFAULT_URL`]).
    pub url: String,
    /// Prefix of every key and channel (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// How long to wait for a connection (default 3 s; 0 means 1 ms).
    pub connect_timeout: Duration,
    /// How long one call waits for its reply (default 3 s; 0 means 1 ms).
    pub io_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: DEFAULT_URL.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}

impl fmt::Debug for RedisOptions {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match (self.url.find("://"), self.url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                format!("{}***{}", &self.url[..s + 3], &self.url[at..])
            }
            _ => self.url.clone(),
        };
        f.debug_struct("RedisOptions")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}
