//! Encoders of the fixed-size packets: the four publish acknowledgements and
//! UNSUBACK (a packet id), PINGREQ, PINGRESP and DISCONNECT (no body).
//! Their decoders are one line each in `dispatch`.
//!
//! ```text
//!  40 02 00 07   PUBACK, packet id 7       (PUBREC 50, PUBREL 62, PUBCOMP 70,
//!                                           UNSUBACK b0)
//!  c0 00         PINGREQ                   (PINGRESP d0, DISCONNECT e0)
//! ```
//!
//! Packet ids are written as given: 0 is not refused here (a decoder
//! accepts it in these packets too).

use bytes::BytesMut;

fn put_id(first: u8, packet_id: u16, out: &mut BytesMut) {
    let [hi, lo] = packet_id.to_be_bytes();
    out.extend_from_slice(&[first, 0x02, hi, lo]);
}

/// Appends a PUBACK: the answer to a QoS 1 PUBLISH.
pub fn encode_puback(packet_id: u16, out: &mut BytesMut) {
    put_id(0x40, packet_id, out);
}

/// Appends a PUBREC: the first answer to a QoS 2 PUBLISH.
pub fn encode_pubrec(packet_id: u16, out: &mut BytesMut) {
    put_id(0x50, packet_id, out);
}

/// Appends a PUBREL (flags 0b0010): the answer to a PUBREC.
pub fn encode_pubrel(packet_id: u16, out: &mut BytesMut) {
    put_id(0x62, packet_id, out);
}

/// Appends a PUBCOMP: the answer to a PUBREL.
pub fn encode_pubcomp(packet_id: u16, out: &mut BytesMut) {
    put_id(0x70, packet_id, out);
}

/// Appends an UNSUBACK: the answer to an UNSUBSCRIBE.
pub fn encode_unsuback(packet_id: u16, out: &mut BytesMut) {
    put_id(0xb0, packet_id, out);
}

/// Appends a PINGREQ (client side).
pub fn encode_pingreq(out: &mut BytesMut) {
    out.extend_from_slice(&[0xc0, 0x00]);
}

/// Appends a PINGRESP: the answer to a PINGREQ.
pub fn encode_pingresp(out: &mut BytesMut) {
    out.extend_from_slice(&[0xd0, 0x00]);
}

/// Appends a DISCONNECT (client side).
pub fn encode_disconnect(out: &mut BytesMut) {
    out.extend_from_slice(&[0xe0, 0x00]);
}
