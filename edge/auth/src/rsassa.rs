//! RSA signature verification (RFC 8017): RSASSA-PKCS1-v1_5 for RS256,
//! RS384 and RS512 (§8.2.2), RSASSA-PSS for PS256, PS384 and PS512
//! (§8.1.2, with MGF1 over the same hash and a salt as long as the hash,
//! as RFC 7518 §3.5 fixes it).
//!
//! Either is one modular exponentiation by the public exponent, then a
//! check of the encoded message. The general-purpose bignum type of the
//! `rsa` crate allocates and divides on every step; here the modulus is
//! prepared once per key ([`Modulus`]) and every step is a Montgomery
//! multiplication.

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::montgomery::Modulus;

/// The widest modulus taken, in bytes (4096 bits): it bounds a
/// verification's work.
const MAX_MODULUS_BYTES: usize = 512;

/// The hash of an RS* or PS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// How the signed hash is encoded before exponentiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    /// RSASSA-PKCS1-v1_5 (RS*).
    Pkcs1v15,
    /// RSASSA-PSS (PS*).
    Pss,
}

impl Hash {
    /// DER of the `DigestInfo` prefix (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// Length of the hash in bytes.
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// Appends the hash of the concatenated `parts` to `out`.
    fn digest(self, parts: &[&[u8]], out: &mut Vec<u8>) {
        fn run<D: Digest>(parts: &[&[u8]], out: &mut Vec<u8>) {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            out.extend_from_slice(&d.finalize());
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts, out),
            Hash::Sha384 => run::<Sha384>(parts, out),
            Hash::Sha512 => run::<Sha512>(parts, out),
        }
    }
}

/// An RSA public key prepared for verification.
pub(crate) struct RsaKey {
    n: Modulus,
    e: u64,
}

impl RsaKey {
    /// A key from its big-endian modulus and exponent, or why they cannot
    /// be an RSA public key.
    pub(crate) fn new(n_be: &[u8], e_be: &[u8]) -> Result<RsaKey, &'static str> {
        let e_be = &e_be[e_be.iter().position(|b| *b != 0).unwrap_or(e_be.len())..];
        if e_be.len() > 8 {
            return Err("the exponent is wider than 64 bits");
        }
        let e = e_be.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // An RSA exponent is odd (coprime with the even λ(n)); 1 is no key.
        if e < 3 || e % 2 == 0 {
            return Err("the exponent is even or below 3");
        }
        let n = Modulus::from_be(n_be).ok_or("the modulus is even or zero")?;
        if n.len() > MAX_MODULUS_BYTES {
            return Err("the modulus is wider than 4096 bits");
        }
        Ok(RsaKey { n, e })
    }

    /// Length of the modulus in bits.
    pub(crate) fn bits(&self) -> usize {
        self.n.bits()
    }

    /// Whether `signature` is a valid signature of `message`.
    pub(crate) fn verify(
        &self,
        padding: Padding,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        // §8.1.2 and §8.2.2 step 1, and §5.2.2: the signature is as long as
        // the modulus and below it (`pow_be` refuses anything else).
        let Some(em) = self.n.pow_be(signature, self.e) else {
            return false;
        };
        match padding {
            Padding::Pkcs1v15 => pkcs1v15_matches(hash, &em, message),
            Padding::Pss => pss_matches(hash, &em, self.n.bits() - 1, message),
        }
    }
}

/// EMSA-PKCS1-v1_5 (§9.2): the whole encoding is known, so it is built and
/// compared.
fn pkcs1v15_matches(hash: Hash, em: &[u8], message: &[u8]) -> bool {
    let k = em.len();
    let prefix = hash.digest_info_prefix();
    let t_len = prefix.len() + hash.len();
    if k < t_len + 11 {
        return false;
    }
    let mut expected = Vec::with_capacity(k);
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(k - t_len - 1, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(prefix);
    hash.digest(&[message], &mut expected);
    em == expected
}

/// EMSA-PSS-VERIFY (§9.1.2) of the modulus-length `em`, for an encoding of
/// `em_bits` bits, with a salt as long as the hash.
fn pss_matches(hash: Hash, em: &[u8], em_bits: usize, message: &[u8]) -> bool {
    let em_len = em_bits.div_ceil(8);
    // The encoding is one byte shorter than the modulus when its bit length
    // is one over whole bytes; that byte must then be zero (I2OSP, §8.1.2).
    let (lead, em) = em.split_at(em.len() - em_len);
    if lead.iter().any(|b| *b != 0) {
        return false;
    }
    let (h_len, s_len) = (hash.len(), hash.len());
    if em_len < h_len + s_len + 2 || em[em_len - 1] != 0xbc {
        return false;
    }
    let (masked_db, h) = em[..em_len - 1].split_at(em_len - h_len - 1);
    // The bits above em_bits are zero.
    let top = 0xffu8 >> (8 * em_len - em_bits);
    if masked_db[0] & !top != 0 {
        return false;
    }
    let mut db = mgf1(hash, h, masked_db.len());
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    db[0] &= top;
    // DB = PS (zeros) || 0x01 || salt.
    let ps_len = em_len - h_len - s_len - 2;
    if db[..ps_len].iter().any(|b| *b != 0) || db[ps_len] != 0x01 {
        return false;
    }
    let salt = &db[ps_len + 1..];
    let mut m_hash = Vec::with_capacity(h_len);
    hash.digest(&[message], &mut m_hash);
    let mut expected = Vec::with_capacity(h_len);
    hash.digest(&[&[0; 8], &m_hash, salt], &mut expected);
    h == expected
}

/// MGF1 (§B.2.1): `len` bytes of hashes of `seed` and a counter.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter = 0u32;
    while out.len() < len {
        hash.digest(&[seed, &counter.to_be_bytes()], &mut out);
        counter += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};

    const RS256: &str = include_str!("../../../tests/fixtures/rs256-private.pem");
    const RSA2049: &str = include_str!("../tests/fixtures/rsa2049_private.pem");
    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";

    fn keys(pem: &str) -> (RsaPrivateKey, RsaKey) {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                RsaPrivateKey::from_pkcs1_pem(pem)
            })
            .unwrap();
        let public = private.to_public_key();
        let ours = RsaKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
        (private, ours)
    }

    /// A deterministic generator for PSS salts (the signer's side only).
    struct Counter(u64);

    impl rsa::rand_core::RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = (self.next_u64() >> 56) as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl rsa::rand_core::CryptoRng for Counter {}

    /// A signature by the `rsa` crate of `message`, as a JWS signer makes it.
    fn sign(private: &RsaPrivateKey, padding: Padding, hash: Hash, message: &[u8]) -> Vec<u8> {
        let mut digest = Vec::new();
        hash.digest(&[message], &mut digest);
        let mut rng = Counter(7);
        match (padding, hash) {
            (Padding::Pkcs1v15, Hash::Sha256) => {
                private.sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            }
            (Padding::Pkcs1v15, Hash::Sha384) => {
                private.sign(Pkcs1v15Sign::new::<Sha384>(), &digest)
            }
            (Padding::Pkcs1v15, Hash::Sha512) => {
                private.sign(Pkcs1v15Sign::new::<Sha512>(), &digest)
            }
            (Padding::Pss, Hash::Sha256) => {
                private.sign_with_rng(&mut rng, Pss::new_with_salt::<Sha256>(32), &digest)
            }
            (Padding::Pss, Hash::Sha384) => {
                private.sign_with_rng(&mut rng, Pss::new_with_salt::<Sha384>(48), &digest)
            }
            (Padding::Pss, Hash::Sha512) => {
                private.sign_with_rng(&mut rng, Pss::new_with_salt::<Sha512>(64), &digest)
            }
        }
        .unwrap()
    }

    const SCHEMES: [(Padding, Hash); 6] = [
        (Padding::Pkcs1v15, Hash::Sha256),
        (Padding::Pkcs1v15, Hash::Sha384),
        (Padding::Pkcs1v15, Hash::Sha512),
        (Padding::Pss, Hash::Sha256),
        (Padding::Pss, Hash::Sha384),
        (Padding::Pss, Hash::Sha512),
    ];

    /// Signatures of every scheme verify, for a 2048-bit key and for a
    /// 2049-bit one (where PSS encodes into one byte fewer than the
    /// modulus); a bit flipped in the signature or the message, or another
    /// scheme or hash, fails.
    #[test]
    fn verifies_the_rsa_crates_signatures_and_nothing_else() {
        for pem in [RS256, RSA2049] {
            let (private, key) = keys(pem);
            for (padding, hash) in SCHEMES {
                let what = format!("{} bits, {padding:?} {hash:?}", key.bits());
                let signature = sign(&private, padding, hash, MESSAGE);
                assert!(key.verify(padding, hash, MESSAGE, &signature), "{what}");
                for i in [0, 17, signature.len() - 1] {
                    let mut bad = signature.clone();
                    bad[i] ^= 1;
                    assert!(
                        !key.verify(padding, hash, MESSAGE, &bad),
                        "{what}, byte {i}"
                    );
                }
                let mut other = MESSAGE.to_vec();
                other[3] ^= 1;
                assert!(!key.verify(padding, hash, &other, &signature), "{what}");
                for (p, h) in SCHEMES.into_iter().filter(|s| *s != (padding, hash)) {
                    assert!(
                        !key.verify(p, h, MESSAGE, &signature),
                        "{what} as {p:?} {h:?}"
                    );
                }
            }
        }
        assert_eq!(keys(RSA2049).1.bits(), 2049);
    }

    #[test]
    fn refuses_wrong_lengths_and_out_of_range_signatures() {
        let (private, key) = keys(RS256);
        let n = private.n().to_bytes_be();
        for (padding, hash) in SCHEMES {
            assert!(!key.verify(padding, hash, b"m", &n[1..]));
            assert!(!key.verify(padding, hash, b"m", &n));
            assert!(!key.verify(padding, hash, b"m", &vec![0xff; n.len()]));
            assert!(!key.verify(padding, hash, b"m", &[]));
        }
    }

    #[test]
    fn refuses_what_cannot_be_an_rsa_key() {
        let e = [1, 0, 1];
        assert!(RsaKey::new(&[0xff; 512], &e).is_ok());
        assert!(RsaKey::new(&[0xff; 513], &e).is_err());
        assert!(RsaKey::new(&[0xfe; 256], &e).is_err(), "even modulus");
        assert!(RsaKey::new(&[0; 256], &e).is_err(), "zero modulus");
        assert!(
            RsaKey::new(&[0xff; 256], &[1, 0, 0]).is_err(),
            "even exponent"
        );
        assert!(RsaKey::new(&[0xff; 256], &[1]).is_err(), "exponent 1");
        assert!(
            RsaKey::new(&[0xff; 256], &[1; 9]).is_err(),
            "exponent over 64 bits"
        );
        assert!(
            RsaKey::new(&[0xff; 256], &[0, 0, 1, 0, 1]).is_ok(),
            "leading zeros"
        );
    }
}
