//! ECDSA P-256 signatures in one form only. For every signature (r, s), (r, n − s) verifies too,
//! so a token would have two valid encodings; anything keyed on a token's text (a deny list, a
//! cache) could be sidestepped with the other one. Tokens are signed with the low `s` (at most
//! n/2) and verified only in that form.

/// The order n of the P-256 group, big-endian.
const N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// n / 2, rounded down, big-endian.
const HALF_N: [u8; 32] = [
    0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xDE, 0x73, 0x7D, 0x56, 0xD3, 0x8B, 0xCF, 0x42, 0x79, 0xDC, 0xE5, 0x61, 0x7E, 0x31, 0x92, 0xA8,
];

/// Whether a fixed-size (r ‖ s) signature has the low `s`.
pub fn is_low_s(signature: &[u8]) -> bool {
    signature.len() == 64 && signature[32..] <= HALF_N[..]
}

/// Turns (r, s) into (r, n − s) when `s` is high, in place.
pub fn normalize(signature: &mut [u8]) {
    if signature.len() == 64 && !is_low_s(signature) {
        negate_s(signature);
    }
}

/// Replaces `s` with n − `s` in a 64-byte (r ‖ s) signature.
pub(crate) fn negate_s(signature: &mut [u8]) {
    let s = &mut signature[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let difference = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(difference < 0);
        s[i] = (difference + (borrow << 8)) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_s_becomes_n_minus_s_and_back() {
        let mut signature = [0u8; 64];
        signature[32..].copy_from_slice(&N);
        signature[63] -= 1; // s = n − 1
        assert!(!is_low_s(&signature));
        normalize(&mut signature);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(signature[32..], one, "n − (n − 1) = 1");
        assert!(is_low_s(&signature));
    }

    #[test]
    fn half_n_is_half_of_n() {
        // 2 · HALF_N + 1 = N.
        let mut doubled = [0u8; 32];
        let mut carry = 1u16;
        for i in (0..32).rev() {
            let sum = 2 * u16::from(HALF_N[i]) + carry;
            doubled[i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(doubled, N);
    }
}
