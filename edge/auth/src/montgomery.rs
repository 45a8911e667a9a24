//! Modular exponentiation by a public exponent, in Montgomery form.
//!
//! Verifying an RSA signature raises it to the public exponent (65537: 16
//! squarings and one multiplication) modulo the key's modulus. Nothing here
//! is secret, so the code may branch on values. Each step is a schoolbook
//! product (a squaring computes each cross product once) followed by a
//! Montgomery reduction, over the native word: 64 bits, or 32 on 32-bit
//! targets such as WebAssembly, where a 64×64→128 multiplication is a call.

#[cfg(target_pointer_width = "64")]
type Word = u64;
#[cfg(target_pointer_width = "64")]
type Wide = u128;
#[cfg(not(target_pointer_width = "64"))]
type Word = u32;
#[cfg(not(target_pointer_width = "64"))]
type Wide = u64;

const WORD_BYTES: usize = Word::BITS as usize / 8;

/// An odd modulus prepared once: a verification then only multiplies.
pub(crate) struct Modulus {
    /// Little-endian words.
    n: Box<[Word]>,
    /// −n⁻¹ mod 2^`Word::BITS`.
    n0_inv: Word,
    /// R² mod n, where R = 2^(`Word::BITS` × words): the factor that brings
    /// a number into Montgomery form.
    r2: Box<[Word]>,
    /// Length of the modulus in bytes, without leading zeros.
    len: usize,
}

impl Modulus {
    /// `None` for an even or zero modulus, which Montgomery form cannot use.
    pub(crate) fn from_be(bytes: &[u8]) -> Option<Modulus> {
        let bytes = &bytes[bytes.iter().position(|b| *b != 0)?..];
        if bytes.last()? % 2 == 0 {
            return None;
        }
        let n = words_from_be(bytes, bytes.len().div_ceil(WORD_BYTES))?;
        // Newton's iteration doubles the correct low bits each round: from
        // 1 (n is odd) to 2, 4, … 64.
        let mut inv: Word = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(Word::wrapping_sub(2, n[0].wrapping_mul(inv)));
        }
        let r2 = r_squared(&n);
        Some(Modulus {
            n0_inv: inv.wrapping_neg(),
            r2,
            n,
            len: bytes.len(),
        })
    }

    /// Length of the modulus in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Length of the modulus in bits.
    pub(crate) fn bits(&self) -> usize {
        // The top word is not zero: leading zero bytes were stripped.
        self.n.len() * Word::BITS as usize - self.n[self.n.len() - 1].leading_zeros() as usize
    }

    /// `base`^`e` mod n as big-endian bytes of [`Modulus::len`], for a
    /// big-endian `base` of that length; `None` when `base` ≥ n or `e` is 0.
    pub(crate) fn pow_be(&self, base: &[u8], e: u64) -> Option<Vec<u8>> {
        if base.len() != self.len || e == 0 {
            return None;
        }
        let k = self.n.len();
        let base = words_from_be(base, k)?;
        if !less(&base, &self.n) {
            return None;
        }
        let mut scratch = vec![0; 2 * k];
        let mut x = vec![0; k];
        self.mul(&base, &self.r2, &mut x, &mut scratch);
        let mut acc = x.clone();
        let mut next = vec![0; k];
        for bit in (0..u64::BITS - 1 - e.leading_zeros()).rev() {
            self.square(&acc, &mut next, &mut scratch);
            std::mem::swap(&mut acc, &mut next);
            if (e >> bit) & 1 == 1 {
                self.mul(&acc, &x, &mut next, &mut scratch);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        // Out of Montgomery form: reduce acc × R⁻¹.
        scratch[..k].copy_from_slice(&acc);
        scratch[k..].fill(0);
        self.reduce(&mut scratch, &mut acc);
        Some(words_to_be(&acc, self.len))
    }

    /// out = a × b × R⁻¹ mod n.
    fn mul(&self, a: &[Word], b: &[Word], out: &mut [Word], t: &mut [Word]) {
        let k = self.n.len();
        t.fill(0);
        for (i, ai) in a.iter().enumerate() {
            let mut carry = 0;
            for (tj, bj) in t[i..i + k].iter_mut().zip(b) {
                (*tj, carry) = mac(*tj, *ai, *bj, carry);
            }
            t[i + k] = carry;
        }
        self.reduce(t, out);
    }

    /// out = a² × R⁻¹ mod n: the cross products once, doubled, then the
    /// squares on the diagonal.
    fn square(&self, a: &[Word], out: &mut [Word], t: &mut [Word]) {
        let k = self.n.len();
        t.fill(0);
        for (i, ai) in a.iter().enumerate() {
            let mut carry = 0;
            for (tj, aj) in t[2 * i + 1..i + k].iter_mut().zip(&a[i + 1..]) {
                (*tj, carry) = mac(*tj, *ai, *aj, carry);
            }
            t[i + k] = carry;
        }
        shift_left_one(t);
        let mut carry = 0;
        for (i, ai) in a.iter().enumerate() {
            let (low, high) = mac(t[2 * i], *ai, *ai, carry);
            t[2 * i] = low;
            (t[2 * i + 1], carry) = mac(t[2 * i + 1], 0, 0, high);
        }
        self.reduce(t, out);
    }

    /// out = t × R⁻¹ mod n, for t < n × R (2k words); t is used up.
    fn reduce(&self, t: &mut [Word], out: &mut [Word]) {
        let k = self.n.len();
        // t grows towards 2n × R, which may not fit 2k words: the carry out
        // of the top word is kept aside.
        let mut top = 0;
        for i in 0..k {
            let m = t[i].wrapping_mul(self.n0_inv);
            let mut carry = 0;
            for (tj, nj) in t[i..i + k].iter_mut().zip(self.n.iter()) {
                (*tj, carry) = mac(*tj, m, *nj, carry);
            }
            let s = Wide::from(t[i + k]) + Wide::from(carry) + Wide::from(top);
            t[i + k] = s as Word;
            top = (s >> Word::BITS) as Word;
        }
        // The result is below 2n: one subtraction at most.
        let high = &t[k..];
        let borrow = sub(high, &self.n, out);
        if top == 0 && borrow {
            out.copy_from_slice(high);
        }
    }
}

/// t + a × b + c as (low word, high word); never overflows.
#[inline(always)]
fn mac(t: Word, a: Word, b: Word, c: Word) -> (Word, Word) {
    let s = Wide::from(t) + Wide::from(a) * Wide::from(b) + Wide::from(c);
    (s as Word, (s >> Word::BITS) as Word)
}

/// out = a − b; whether it borrowed (a < b).
fn sub(a: &[Word], b: &[Word], out: &mut [Word]) -> bool {
    let mut borrow = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (d, b1) = x.overflowing_sub(*y);
        let (d, b2) = d.overflowing_sub(Word::from(borrow));
        *o = d;
        borrow = b1 | b2;
    }
    borrow
}

/// Doubles a number in place; gives the bit shifted out of the top.
fn shift_left_one(words: &mut [Word]) -> Word {
    let mut shifted_out = 0;
    for w in words.iter_mut() {
        (*w, shifted_out) = ((*w << 1) | shifted_out, *w >> (Word::BITS - 1));
    }
    shifted_out
}

fn less(a: &[Word], b: &[Word]) -> bool {
    a.iter().rev().lt(b.iter().rev())
}

/// R² mod n by doubling 1 modulo n, 2 × `Word::BITS` × k times: once per
/// key, so simplicity wins over speed.
fn r_squared(n: &[Word]) -> Box<[Word]> {
    let mut x = vec![0; n.len()];
    let mut doubled = vec![0; n.len()];
    x[0] = 1;
    for _ in 0..2 * Word::BITS as usize * n.len() {
        let shifted_out = shift_left_one(&mut x);
        // x < n before, so 2x < 2n: subtract n once when 2x ≥ n.
        if sub(&x, n, &mut doubled) == (shifted_out == 1) {
            std::mem::swap(&mut x, &mut doubled);
        }
    }
    x.into_boxed_slice()
}

/// A big-endian number as `k` little-endian words; `None` when it is wider.
fn words_from_be(bytes: &[u8], k: usize) -> Option<Box<[Word]>> {
    let mut words = vec![0; k];
    let mut chunks = bytes.rchunks(WORD_BYTES);
    for w in words.iter_mut() {
        match chunks.next() {
            Some(chunk) => *w = chunk.iter().fold(0, |acc, b| (acc << 8) | Word::from(*b)),
            None => break,
        }
    }
    chunks.next().is_none().then(|| words.into_boxed_slice())
}

/// The low `len` bytes of a number, big-endian.
fn words_to_be(words: &[Word], len: usize) -> Vec<u8> {
    let bytes: Vec<u8> = words.iter().rev().flat_map(|w| w.to_be_bytes()).collect();
    bytes[bytes.len() - len..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;

    /// Deterministic bytes (xorshift), so a failure can be replayed.
    fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    fn padded(n: &BigUint, len: usize) -> Vec<u8> {
        let b = n.to_bytes_be();
        let mut out = vec![0; len - b.len()];
        out.extend_from_slice(&b);
        out
    }

    /// Agrees with a general-purpose modpow for moduli of many widths (whole
    /// words and not), bases across the range and several exponents.
    #[test]
    fn agrees_with_a_general_modpow() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for len in [1, 3, 8, 9, 31, 64, 65, 255, 256, 384, 512] {
            let mut n_be = bytes(&mut seed, len);
            n_be[0] |= 0x80;
            n_be[len - 1] |= 1;
            let n = BigUint::from_bytes_be(&n_be);
            let modulus = Modulus::from_be(&n_be).unwrap();
            assert_eq!(modulus.len(), len);
            let minus_one = &n - 1u32;
            for base in [
                BigUint::from(0u32),
                BigUint::from(1u32),
                minus_one,
                BigUint::from_bytes_be(&bytes(&mut seed, len)) % &n,
                BigUint::from_bytes_be(&bytes(&mut seed, len)) % &n,
            ] {
                for e in [1u64, 2, 3, 17, 65537, u64::MAX] {
                    let want = base.modpow(&BigUint::from(e), &n);
                    assert_eq!(
                        modulus.pow_be(&padded(&base, len), e),
                        Some(padded(&want, len)),
                        "{len}-byte modulus, e = {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        assert!(Modulus::from_be(&[]).is_none());
        assert!(Modulus::from_be(&[0, 0]).is_none());
        assert!(Modulus::from_be(&[0x81, 0x02]).is_none(), "even");
        let m = Modulus::from_be(&[0, 0x81, 0x03]).unwrap();
        assert_eq!(m.len(), 2, "leading zeros are not part of the length");
        assert!(m.pow_be(&[0x81, 0x03], 3).is_none(), "base = n");
        assert!(m.pow_be(&[0xff, 0xff], 3).is_none(), "base > n");
        assert!(m.pow_be(&[0x05], 3).is_none(), "short base");
        assert!(m.pow_be(&[0, 0, 0x05], 3).is_none(), "long base");
        assert!(m.pow_be(&[0, 0x05], 0).is_none(), "e = 0");
        assert_eq!(m.pow_be(&[0, 0x05], 3), Some(vec![0, 125]));
    }
}
