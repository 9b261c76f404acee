//! The TLS side of the client transports (`wss`): the rustls client
//! configuration (`--cafile` or `--insecure`) and the non-blocking reads
//! and writes through rustls that `transport` drives. Split from
//! `transport` by concept.

use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::BytesMut;
use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::transport::TransportArgs;

/// The rustls client configuration of `wss`: the gate's certificate checked
/// against `--cafile`, or not at all (`--insecure`).
pub(crate) fn tls_config(
    addr: SocketAddr,
    args: &TransportArgs,
) -> Result<(Arc<ClientConfig>, ServerName<'static>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match (&args.cafile, args.insecure) {
        (Some(_), true) => bail!("give --cafile or --insecure, not both"),
        (Some(path), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate of {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("no certificate in {}", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        (None, false) => {
            bail!("--transport wss needs --cafile PATH (the server's certificate) or --insecure")
        }
    };
    let name = match &args.server_name {
        Some(n) => ServerName::try_from(n.clone()).context("--server-name")?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    Ok((Arc::new(config), name))
}

/// `--insecure`: any certificate is accepted; handshake signatures are still
/// verified (the key exchange is real, only the identity is not checked).
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Plaintext produced by one TLS read.
pub(crate) struct TlsRead {
    /// The socket had nothing more.
    pub(crate) drained: bool,
    /// The peer closed (EOF or close_notify).
    pub(crate) closed: bool,
}

/// Writes what rustls holds until it is empty (`Ok(true)`) or the socket is
/// full (`Ok(false)`).
pub(crate) fn flush_tls(tls: &mut ClientConnection, mut sock: &TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// One TLS read: a chunk of the socket through rustls, its plaintext
/// appended to `dst`.
pub(crate) fn read_tls(
    tls: &mut ClientConnection,
    sock: &TcpStream,
    dst: &mut Vec<u8>,
) -> io::Result<TlsRead> {
    read_tls_with(tls, sock, |chunk| dst.extend_from_slice(chunk))
}

/// [`read_tls`] into a read buffer.
pub(crate) fn read_tls_into(
    tls: &mut ClientConnection,
    sock: &TcpStream,
    dst: &mut BytesMut,
) -> io::Result<TlsRead> {
    read_tls_with(tls, sock, |chunk| dst.extend_from_slice(chunk))
}

pub(crate) fn read_tls_with(
    tls: &mut ClientConnection,
    sock: &TcpStream,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<TlsRead> {
    let (mut drained, mut eof) = (false, false);
    loop {
        match tls.read_tls(&mut { sock }) {
            Ok(0) => eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        break;
    }
    let state = match tls.process_new_packets() {
        Ok(s) => s,
        Err(e) => {
            // Send the alert rustls queued, then give up on the connection.
            let _ = flush_tls(tls, sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    };
    let mut closed = eof || state.peer_has_closed();
    let mut reader = tls.reader();
    loop {
        match reader.fill_buf() {
            Ok([]) => {
                closed = true;
                break;
            }
            Ok(chunk) => {
                let n = chunk.len();
                sink(chunk);
                reader.consume(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                closed = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(TlsRead { drained, closed })
}
