//! Fixed-width integers in the configured byte order: the size prefix, the
//! route and seq fields (signed, 0 to 4 bytes) and the heartbeat time.
//!
//! Everything works on plain arrays and slices, so that a packet's header is
//! assembled on the stack and copied into the buffer in one go. Callers
//! refuse route and seq widths over [`MAX_INT_BYTES`] first.

use super::ByteOrder;

/// Widest route or seq field the codec can carry.
pub(super) const MAX_INT_BYTES: usize = 4;

pub(super) fn u32_bytes(v: u32, order: ByteOrder) -> [u8; 4] {
    match order {
        ByteOrder::Big => v.to_be_bytes(),
        ByteOrder::Little => v.to_le_bytes(),
    }
}

pub(super) fn u32_from(bytes: [u8; 4], order: ByteOrder) -> u32 {
    match order {
        ByteOrder::Big => u32::from_be_bytes(bytes),
        ByteOrder::Little => u32::from_le_bytes(bytes),
    }
}

pub(super) fn i64_bytes(v: i64, order: ByteOrder) -> [u8; 8] {
    match order {
        ByteOrder::Big => v.to_be_bytes(),
        ByteOrder::Little => v.to_le_bytes(),
    }
}

pub(super) fn i64_from(bytes: [u8; 8], order: ByteOrder) -> i64 {
    match order {
        ByteOrder::Big => i64::from_be_bytes(bytes),
        ByteOrder::Little => i64::from_le_bytes(bytes),
    }
}

/// Whether `v` fits the signed range of `width` bytes (only 0 fits width 0).
pub(super) fn fits(v: i32, width: usize) -> bool {
    match width {
        0 => v == 0,
        1..MAX_INT_BYTES => {
            let half = 1i32 << (8 * width - 1);
            (-half..half).contains(&v)
        }
        _ => true,
    }
}

/// Writes the low `out.len()` bytes of `v` into `out` in `order`.
///
/// One arm per width keeps every copy a fixed-size store (a variable-length
/// copy would be a `memcpy` call). Widths over 4 are refused before this is
/// called; they would be left zeroed.
pub(super) fn put_int(out: &mut [u8], v: i32, order: ByteOrder) {
    use ByteOrder::{Big, Little};
    match (out, order) {
        ([], _) => {}
        ([a], _) => *a = v as u8,
        ([a, b], Big) => [*a, *b] = (v as i16).to_be_bytes(),
        ([a, b], Little) => [*a, *b] = (v as i16).to_le_bytes(),
        ([a, b, c], Big) => {
            let [_, x, y, z] = v.to_be_bytes();
            [*a, *b, *c] = [x, y, z];
        }
        ([a, b, c], Little) => {
            let [x, y, z, _] = v.to_le_bytes();
            [*a, *b, *c] = [x, y, z];
        }
        ([a, b, c, d], Big) => [*a, *b, *c, *d] = v.to_be_bytes(),
        ([a, b, c, d], Little) => [*a, *b, *c, *d] = v.to_le_bytes(),
        _ => debug_assert!(false, "field wider than {MAX_INT_BYTES} bytes"),
    }
}

/// Reads `bytes` in `order` as a signed integer sign-extended to `i32`.
///
/// As for [`put_int`], one arm per width; wider fields read as 0.
pub(super) fn get_int(bytes: &[u8], order: ByteOrder) -> i32 {
    use ByteOrder::{Big, Little};
    match (bytes, order) {
        (&[], _) => 0,
        (&[a], _) => i32::from(a as i8),
        (&[a, b], Big) => i32::from(i16::from_be_bytes([a, b])),
        (&[a, b], Little) => i32::from(i16::from_le_bytes([a, b])),
        // Three bytes: load into the top of an i32, shift down to extend the sign.
        (&[a, b, c], Big) => i32::from_be_bytes([a, b, c, 0]) >> 8,
        (&[a, b, c], Little) => i32::from_le_bytes([0, a, b, c]) >> 8,
        (&[a, b, c, d], Big) => i32::from_be_bytes([a, b, c, d]),
        (&[a, b, c, d], Little) => i32::from_le_bytes([a, b, c, d]),
        _ => {
            debug_assert!(false, "field wider than {MAX_INT_BYTES} bytes");
            0
        }
    }
}
