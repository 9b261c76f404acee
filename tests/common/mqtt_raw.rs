//! A minimal MQTT 3.1.1 client over a plain socket, written from the
//! specification (not with ringgate's codec), to send exactly the bytes a
//! test wants. Used by tests/mqtt and tests/hostile.rs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::PATIENCE;

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT, MQTT 3.1.1, clean session; byte 9 is the connect flags.
pub fn connect(client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut b = Vec::new();
    string(b"MQTT", &mut b);
    b.push(4);
    b.push(0x02);
    b.extend_from_slice(&keep_alive.to_be_bytes());
    string(client_id.as_bytes(), &mut b);
    packet(0x10, &b)
}

pub fn publish_bytes(topic: &[u8], payload: &[u8], qos: u8, id: u16) -> Vec<u8> {
    let mut b = Vec::new();
    string(topic, &mut b);
    if qos > 0 {
        b.extend_from_slice(&id.to_be_bytes());
    }
    b.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &b)
}

pub fn publish(topic: &str, payload: &[u8], qos: u8, id: u16) -> Vec<u8> {
    publish_bytes(topic.as_bytes(), payload, qos, id)
}

pub struct Mqtt {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Mqtt {
    /// A TCP connection, nothing sent.
    pub fn open(addr: SocketAddr) -> Mqtt {
        let s = TcpStream::connect(addr).expect("connect to the MQTT listener");
        s.set_nodelay(true).unwrap();
        Mqtt { s, buf: Vec::new() }
    }

    /// Connected: CONNECT sent and CONNACK 20 02 00 00 received.
    pub fn connect(addr: SocketAddr, client_id: &str, keep_alive: u16) -> Mqtt {
        let mut m = Mqtt::open(addr);
        m.send(&connect(client_id, keep_alive));
        let (h, body) = m.recv().expect("CONNACK");
        assert_eq!((h, &body[..]), (0x20, &[0u8, 0][..]), "CONNACK");
        m
    }

    pub fn send(&mut self, b: &[u8]) {
        // A write may fail when the gate has already closed: the test then
        // sees the close.
        let _ = self.s.write_all(b);
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, id: u16) {
        self.send(&publish(topic, payload, qos, id));
    }

    fn parse(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut len = 0usize;
        let mut mult = 1usize;
        let mut i = 1;
        loop {
            let b = *self.buf.get(i)?;
            len += (b & 0x7f) as usize * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            assert!(i <= 4, "the gate sent a bad remaining length");
        }
        if self.buf.len() < i + len {
            return None;
        }
        let h = self.buf[0];
        let body = self.buf[i..i + len].to_vec();
        self.buf.drain(..i + len);
        Some((h, body))
    }

    /// The next packet (first byte, body); `None` on EOF or reset.
    pub fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        self.s.set_read_timeout(Some(PATIENCE)).unwrap();
        loop {
            if let Some(p) = self.parse() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("nothing from the gate within {PATIENCE:?}")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next PUBLISH's topic and payload (QoS 0 expected).
    pub fn recv_publish(&mut self) -> Option<(String, Vec<u8>)> {
        let (h, body) = self.recv()?;
        assert_eq!(h, 0x30, "a QoS 0 PUBLISH without flags, got {h:#04x}");
        let n = u16::from_be_bytes([body[0], body[1]]) as usize;
        let topic = String::from_utf8(body[2..2 + n].to_vec()).unwrap();
        Some((topic, body[2 + n..].to_vec()))
    }

    /// Ok(bytes received before EOF/reset) if the gate closes within
    /// `within`; Err(what was received) otherwise.
    pub fn until_closed(&mut self, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let end = Instant::now() + within;
        let mut got = std::mem::take(&mut self.buf);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(got);
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Ok(got),
            }
        }
    }
}
