//! TLS for client connections (TCP and wss), with rustls driven sans-IO.
//!
//! Owns loading the certificate and key named in `[network.tcp]` /
//! `[network.ws]` ([`load_server_config`], at gate start, with errors that
//! name the file and the problem) and the per-connection state machine
//! ([`TlsConn`]): ciphertext in, plaintext out, plaintext in, ciphertext
//! out. It never touches a socket or a clock: the shard moves the bytes and
//! enforces `tls_handshake_timeout`.
//!
//! ```text
//!  recv ─▶ feed(ciphertext) ─▶ read_plaintext ─▶ [ws] ─▶ codec
//!  codec ─▶ [ws] ─▶ write_plaintext ─▶ take_ciphertext ─▶ send
//!                   (feed may queue handshake bytes: call take_ciphertext after it too)
//! ```
//!
//! The crypto provider is *ring*, chosen explicitly (no process-wide
//! default needed); TLS 1.2 and 1.3 with rustls's safe defaults.

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::server::ServerConnection;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up or a TLS connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} {}: {source}", .path.display())]
    Read {
        /// "certificate file" or "private key file".
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{what} {} is not valid PEM: {message}", .path.display())]
    Pem {
        /// "certificate file" or "private key file".
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No `CERTIFICATE` block in the certificate file.
    #[error("no certificate (-----BEGIN CERTIFICATE-----) in {}", .path.display())]
    NoCertificate {
        /// The path as configured.
        path: PathBuf,
    },
    /// No private key block in the key file.
    #[error(
        "no private key (-----BEGIN PRIVATE KEY----- / RSA PRIVATE KEY / EC PRIVATE KEY) in {}",
        .path.display()
    )]
    NoPrivateKey {
        /// The path as configured.
        path: PathBuf,
    },
    /// rustls refused the pair: a key that does not match the certificate,
    /// an unsupported key type, a malformed certificate.
    #[error("{} with {}: {message}", .cert.display(), .key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
    /// The peer broke TLS (bad record, failed handshake, unsupported
    /// version). An alert for the peer may be waiting in
    /// [`TlsConn::take_ciphertext`]: send it, then close.
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    /// Plaintext written after the connection was closed.
    #[error("TLS connection closed for writing")]
    Closed,
}

/// Loads a PEM certificate chain (server certificate first) and its PEM
/// private key (PKCS#8, PKCS#1 or SEC1) into a server configuration shared
/// by every connection of every shard. Fails if either file is missing or
/// unreadable, holds no certificate or no key, or the key does not match
/// the certificate.
pub fn load_server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    const CERT: &str = "certificate file";
    const KEY: &str = "private key file";
    let cert_pem = read(CERT, cert_file)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(CERT, cert_file, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_owned(),
        });
    }
    let key_pem = read(KEY, key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key_file.to_owned(),
        },
        e => pem_error(KEY, key_file, &e),
    })?;
    let config_error = |message: String| TlsError::Config {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            config_error(match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the private key does not match the certificate".to_owned()
                }
                e => e.to_string(),
            })
        })?;
    Ok(Arc::new(config))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, e: &pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// One server-side TLS connection, sans-IO: the shard feeds it what the
/// socket received and sends what it produces.
///
/// Outbound plaintext is never refused for lack of room (rustls's own
/// buffer limit is lifted): the shard bounds a connection's outbound bytes
/// as it does for plain TCP. Decrypted bytes wait here until
/// [`TlsConn::read_plaintext`] takes them.
pub struct TlsConn {
    conn: ServerConnection,
    /// Decrypted bytes not yet taken.
    plain: BytesMut,
    /// The peer sent close_notify (or the stream ended).
    peer_closed: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.conn.is_handshaking())
            .field("plain", &self.plain.len())
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

impl TlsConn {
    /// A connection accepted under `config` (see [`load_server_config`]).
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(None);
        Ok(TlsConn {
            conn,
            plain: BytesMut::new(),
            peer_closed: false,
        })
    }

    /// Takes ciphertext the socket received, all of it: runs the handshake
    /// or decrypts records, keeping the plaintext for
    /// [`TlsConn::read_plaintext`]. Call [`TlsConn::take_ciphertext`]
    /// afterwards: a handshake step or an alert may be waiting to go out.
    /// Bytes after the peer's close_notify are ignored. On `Err` the
    /// connection is dead: send what `take_ciphertext` gives (an alert),
    /// then close.
    pub fn feed(&mut self, mut ciphertext: &[u8]) -> Result<(), TlsError> {
        while !ciphertext.is_empty() && !self.peer_closed {
            let n = match self.conn.read_tls(&mut ciphertext) {
                Ok(n) => n,
                // Only "received plaintext buffer full", which draining
                // after every record prevents.
                Err(e) => return Err(TlsError::Protocol(rustls::Error::General(e.to_string()))),
            };
            let state = self.conn.process_new_packets()?;
            self.drain(state.plaintext_bytes_to_read());
            if n == 0 || state.peer_has_closed() {
                self.peer_closed = true;
            }
        }
        Ok(())
    }

    /// Moves `n` decrypted bytes from rustls to `plain`.
    fn drain(&mut self, mut n: usize) {
        let mut reader = self.conn.reader();
        while n > 0 {
            let Ok(chunk) = reader.fill_buf() else { break };
            if chunk.is_empty() {
                break;
            }
            let k = chunk.len().min(n);
            self.plain.extend_from_slice(&chunk[..k]);
            reader.consume(k);
            n -= k;
        }
    }

    /// Appends the plaintext received so far to `dst`; returns how many
    /// bytes. Without a copy when `dst` is empty.
    pub fn read_plaintext(&mut self, dst: &mut BytesMut) -> usize {
        let n = self.plain.len();
        if n > 0 {
            dst.unsplit(self.plain.split());
        }
        n
    }

    /// Encrypts `data` for the peer (buffered until the handshake is done).
    /// Take the result with [`TlsConn::take_ciphertext`].
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.conn
            .writer()
            .write_all(data)
            .map_err(|_| TlsError::Closed)
    }

    /// Appends every byte waiting to be sent (handshake, records, alerts)
    /// to `dst`; returns how many.
    pub fn take_ciphertext(&mut self, dst: &mut BytesMut) -> usize {
        let mut total = 0;
        let mut w = dst.writer();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut w) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    }

    /// Queues the close_notify alert after everything written so far; the
    /// peer then knows the stream ended on purpose, not by truncation.
    /// Nothing can be written after it.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// The handshake is not complete yet (the shard's handshake timeout runs).
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Bytes are waiting for [`TlsConn::take_ciphertext`].
    #[must_use]
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }
}

#[cfg(test)]
mod tests;
