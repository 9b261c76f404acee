//! TLS tests: loading (each failure names its file and problem) and a rustls
//! client driven in memory against [`TlsConn`], every byte moved in small
//! pieces, as the shard's reads and writes would cut them.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;

/// A self-signed certificate for `localhost`: (cert PEM, key PEM, cert DER).
fn self_signed() -> (String, String, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().clone(),
    )
}

/// A fresh directory for this test's files.
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringgate-tls-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A loaded server config and the client config that trusts it.
fn pair(test: &str) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (cert, key, der) = self_signed();
    let d = dir(test);
    let server =
        load_server_config(&write(&d, "cert.pem", &cert), &write(&d, "key.pem", &key)).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let _ = std::fs::remove_dir_all(&d);
    (server, Arc::new(client))
}

/// Client → server: everything the client has to send, fed in `piece`-byte reads.
fn client_to_server(client: &mut ClientConnection, server: &mut TlsConn, piece: usize) {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    for chunk in wire.chunks(piece) {
        server.feed(chunk).unwrap();
    }
}

/// Server → client, in `piece`-byte reads; returns the plaintext the
/// client decrypted (read as it comes, as an application would).
fn server_to_client(server: &mut TlsConn, client: &mut ClientConnection, piece: usize) -> Vec<u8> {
    let mut wire = BytesMut::new();
    server.take_ciphertext(&mut wire);
    let mut plain = Vec::new();
    for mut chunk in wire.chunks(piece) {
        while !chunk.is_empty() {
            client.read_tls(&mut chunk).unwrap();
            let state = client.process_new_packets().unwrap();
            let mut got = vec![0; state.plaintext_bytes_to_read()];
            std::io::Read::read_exact(&mut client.reader(), &mut got).unwrap();
            plain.extend(got);
        }
    }
    plain
}

/// A handshaken client/server pair.
fn connected(test: &str, piece: usize) -> (ClientConnection, TlsConn) {
    let (server_cfg, client_cfg) = pair(test);
    let mut server = TlsConn::new(server_cfg).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client_cfg, name).unwrap();
    client.set_buffer_limit(None);
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            break;
        }
        client_to_server(&mut client, &mut server, piece);
        server_to_client(&mut server, &mut client, piece);
    }
    assert!(
        !client.is_handshaking() && !server.is_handshaking(),
        "handshake done"
    );
    (client, server)
}

#[test]
fn handshake_and_data_both_ways_in_small_pieces() {
    for piece in [1, 7, 100, 4096] {
        let (mut client, mut server) = connected(&format!("data-{piece}"), piece);
        // Client → server: 100 KB, several records, fed in small reads.
        let up: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.writer().write_all(&up).unwrap();
        client_to_server(&mut client, &mut server, piece);
        let mut got = BytesMut::new();
        assert_eq!(server.read_plaintext(&mut got), up.len());
        assert_eq!(&got[..], &up[..], "piece {piece}");
        assert_eq!(server.read_plaintext(&mut got), 0, "taken once");
        // Server → client, in two writes.
        let down: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        server.write_plaintext(&down[..20_000]).unwrap();
        server.write_plaintext(&down[20_000..]).unwrap();
        assert!(server.wants_write());
        let got = server_to_client(&mut server, &mut client, piece);
        assert!(!server.wants_write());
        assert_eq!(got, down);
    }
}

#[test]
fn plaintext_written_during_the_handshake_waits_for_it() {
    let (server_cfg, client_cfg) = pair("early");
    let mut server = TlsConn::new(server_cfg).unwrap();
    server.write_plaintext(b"welcome").unwrap();
    let mut client =
        ClientConnection::new(client_cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        client_to_server(&mut client, &mut server, 50);
        got.extend(server_to_client(&mut server, &mut client, 50));
    }
    assert!(!server.is_handshaking());
    assert_eq!(got, b"welcome");
}

#[test]
fn bytes_after_the_client_close_notify_are_ignored() {
    let (mut client, mut server) = connected("close", 64);
    client.writer().write_all(b"last words").unwrap();
    client.send_close_notify();
    client_to_server(&mut client, &mut server, 3);
    let mut got = BytesMut::new();
    server.read_plaintext(&mut got);
    assert_eq!(&got[..], b"last words");
    // Not TLS records: an error unless the close_notify ended the stream.
    server.feed(b"ignored after close").unwrap();
    assert_eq!(server.read_plaintext(&mut got), 0);
}

#[test]
fn garbage_is_a_protocol_error_with_an_alert() {
    let (server_cfg, _) = pair("garbage");
    let mut server = TlsConn::new(server_cfg).unwrap();
    let e = server
        .feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap_err();
    assert!(matches!(e, TlsError::Protocol(_)), "{e}");
    let mut alert = BytesMut::new();
    assert!(
        server.take_ciphertext(&mut alert) > 0,
        "an alert for the peer"
    );
    assert_eq!(alert[0], 0x15, "TLS alert record");
}

#[test]
fn missing_files_are_named() {
    let d = dir("missing");
    let (_, key, _) = self_signed();
    let key_file = write(&d, "key.pem", &key);
    let e = load_server_config(&d.join("nope.pem"), &key_file).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("cannot read certificate file"), "{msg}");
    assert!(msg.contains("nope.pem"), "{msg}");
    let (cert, _, _) = self_signed();
    let cert_file = write(&d, "cert.pem", &cert);
    let msg = load_server_config(&cert_file, &d.join("nokey.pem"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot read private key file") && msg.contains("nokey.pem"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wrong_contents_are_explained() {
    let d = dir("contents");
    let (cert, key, _) = self_signed();
    let cert_file = write(&d, "cert.pem", &cert);
    let key_file = write(&d, "key.pem", &key);
    // The files swapped: no certificate in the first, no key in the second.
    let e = load_server_config(&key_file, &key_file).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    assert!(e.to_string().contains("key.pem"), "{e}");
    let e = load_server_config(&cert_file, &cert_file).unwrap_err();
    assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e}");
    assert!(e.to_string().contains("no private key"), "{e}");
    // Broken PEM.
    let broken = write(
        &d,
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let e = load_server_config(&broken, &key_file).unwrap_err();
    assert!(matches!(e, TlsError::Pem { .. }), "{e}");
    assert!(e.to_string().contains("broken.pem is not valid PEM"), "{e}");
    // A key from another certificate.
    let (_, other_key, _) = self_signed();
    let other = write(&d, "other.pem", &other_key);
    let e = load_server_config(&cert_file, &other).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("does not match the certificate"), "{msg}");
    assert!(
        msg.contains("cert.pem") && msg.contains("other.pem"),
        "{msg}"
    );
    // Cert and key in one file work.
    let both = write(&d, "both.pem", &format!("{cert}{key}"));
    load_server_config(&both, &both).unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
