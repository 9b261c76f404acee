//! MQTT sessions follow `session.rebind` by client id: a second CONNECT
//! with the id of a live session takes over (the old connection is closed,
//! reason rebind) or, with `rebind = "reject"`, is refused.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use common::{test_config, wait_until, PATIENCE};
use ringgate::codec::mqtt::{self as wire, Outbound};
use ringgate::config::Rebind;
use ringgate::gate::Gate;
use ringgate::session::CloseReason;

fn gate(rebind: Rebind) -> Gate {
    common::init_logs();
    // No node is needed to connect; the link stays down.
    let mut cfg = test_config(&["127.0.0.1:9".parse().unwrap()]);
    cfg.network.mqtt.enabled = true;
    cfg.network.mqtt.addr = "127.0.0.1:0".parse().unwrap();
    cfg.session.rebind = rebind;
    cfg.validate().unwrap();
    Gate::start(&cfg).unwrap()
}

/// A connected MQTT client (CONNACK read).
fn connect(addr: SocketAddr, client_id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut b = BytesMut::new();
    let c = wire::Connect {
        level: 4,
        client_id: client_id.into(),
        clean_session: true,
        keep_alive: 0,
        username: None,
        password: None,
        will: None,
    };
    wire::encode_connect(&c, &mut b).unwrap();
    s.write_all(&b).unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    let mut bm = BytesMut::from(&buf[..]);
    assert_eq!(
        wire::decode_server(&mut bm, 1024).unwrap(),
        Some(Outbound::ConnAck {
            session_present: false,
            return_code: 0
        })
    );
    s
}

/// True if the gate closes `s` within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_second_connect_with_the_same_client_id_takes_over() {
    let g = gate(Rebind::Kick);
    let addr = g.mqtt_addr().unwrap();
    let mut first = connect(addr, "player-1");
    let mut other = connect(addr, "player-2");
    let mut second = connect(addr, "player-1");
    assert!(
        closed_within(&mut first, PATIENCE),
        "the old connection is closed"
    );
    wait_until(PATIENCE, "closed as rebind", || {
        g.stats().closed_for(CloseReason::Rebind) == 1
    });
    assert!(!closed_within(&mut second, Duration::from_millis(300)));
    assert!(!closed_within(&mut other, Duration::from_millis(10)));
    // Clients that sent no id get one each: never a takeover.
    let _a = connect(addr, "");
    let mut b = connect(addr, "");
    assert!(!closed_within(&mut b, Duration::from_millis(300)));
    assert_eq!(g.stats().closed_for(CloseReason::Rebind), 1);
    g.stop();
}

#[test]
fn with_rebind_reject_the_newcomer_is_closed() {
    let g = gate(Rebind::Reject);
    let addr = g.mqtt_addr().unwrap();
    let mut first = connect(addr, "player-1");
    let mut second = connect(addr, "player-1");
    assert!(closed_within(&mut second, PATIENCE));
    assert!(!closed_within(&mut first, Duration::from_millis(300)));
    // Once the holder leaves, the id is free again.
    drop(first);
    wait_until(PATIENCE, "first gone", || g.stats().connections == 0);
    let mut third = connect(addr, "player-1");
    assert!(!closed_within(&mut third, Duration::from_millis(300)));
    g.stop();
}
