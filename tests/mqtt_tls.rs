//! MQTT over TLS (`[network.mqtt] cert_file` / `key_file`): a rustls client
//! connects, gets its CONNACK and its acks through TLS; a plaintext MQTT
//! client on the TLS port is closed and counted; a certificate that does not
//! load stops the gate at start naming the key and the file (mqant falls
//! back to plaintext instead).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::BytesMut;
use common::certs::*;
use common::{test_config, wait_until, PATIENCE};
use ringgate::codec::mqtt::{self as wire, Outbound};
use ringgate::config::Config;
use ringgate::gate::Gate;

fn config(cert: &TestCert) -> Config {
    let mut cfg = test_config(&["127.0.0.1:9".parse().unwrap()]);
    cfg.network.mqtt.enabled = true;
    cfg.network.mqtt.addr = "127.0.0.1:0".parse().unwrap();
    cfg.network.mqtt.cert_file = cert.cert_file.clone();
    cfg.network.mqtt.key_file = cert.key_file.clone();
    cfg
}

fn connect_packet() -> BytesMut {
    let mut b = BytesMut::new();
    let c = wire::Connect {
        level: 4,
        client_id: "tls-1".into(),
        clean_session: true,
        keep_alive: 30,
        username: None,
        password: None,
        will: None,
    };
    wire::encode_connect(&c, &mut b).unwrap();
    wire::encode_subscribe(7, &[("a/b", 1)], &mut b).unwrap();
    wire::encode_pingreq(&mut b);
    b
}

/// Reads server packets until `n` have arrived.
fn read_packets(s: &mut impl Read, n: usize) -> Vec<Outbound> {
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        while let Some(p) = wire::decode_server(&mut buf, 1 << 20).unwrap() {
            out.push(p);
        }
        if out.len() >= n {
            break;
        }
        let k = s.read(&mut chunk).expect("the gate answers");
        assert!(k > 0, "closed after {out:?}");
        buf.extend_from_slice(&chunk[..k]);
    }
    out
}

#[test]
fn an_mqtt_client_speaks_tls_and_a_plaintext_one_is_refused() {
    common::init_logs();
    let dir = TempDir::new("mqtt-tls");
    let cert = write_cert(&dir.0, "gate");
    let mut cfg = config(&cert);
    cfg.validate().unwrap();
    let g = Gate::start(&cfg).unwrap();
    let addr: SocketAddr = g.mqtt_addr().unwrap();

    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(client_tls(&cert), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(&connect_packet()).unwrap();
    s.flush().unwrap();
    assert_eq!(
        read_packets(&mut s, 3),
        [
            Outbound::ConnAck {
                session_present: false,
                return_code: 0
            },
            Outbound::SubAck {
                packet_id: 7,
                granted: vec![0]
            },
            Outbound::PingResp
        ]
    );

    // Plain MQTT on the TLS port: not a TLS record, closed and counted.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.write_all(&connect_packet()).unwrap();
    let mut b = [0u8; 64];
    loop {
        match plain.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(_) => {} // a TLS alert
        }
    }
    wait_until(PATIENCE, "the TLS failure counted", || {
        g.stats().tls_failures == 1
    });
    // The TLS client is still served.
    s.write_all(&{
        let mut p = BytesMut::new();
        wire::encode_pingreq(&mut p);
        p
    })
    .unwrap();
    s.flush().unwrap();
    assert_eq!(read_packets(&mut s, 1), [Outbound::PingResp]);
    g.stop();
}

#[test]
fn a_bad_certificate_stops_the_gate_at_start_naming_the_key_and_file() {
    let dir = TempDir::new("mqtt-tls-bad");
    let good = write_cert(&dir.0, "good");
    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut cfg = config(&good);
    cfg.network.mqtt.cert_file = junk;
    cfg.validate().unwrap();
    let err = match Gate::start(&cfg) {
        Ok(_) => panic!("a gate with a junk certificate started"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("network.mqtt") && err.contains("junk.pem"),
        "{err}"
    );
}
