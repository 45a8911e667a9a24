//! RSASSA-PKCS1-v1_5 verification (RS256, RS384, RS512; RFC 8017 §8.2.2).
//!
//! Verifying is one modular exponentiation by the public exponent and a
//! comparison with the expected encoding. The general-purpose bignum type
//! of the `rsa` crate allocates and divides on every step; here the
//! modulus is prepared once per key ([`Modulus`]) and every step is a
//! Montgomery multiplication. Keys wider than 4096 bits, or with an
//! exponent above 64 bits, keep the `rsa` path.

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::montgomery::Modulus;

/// The widest modulus taken here, in bytes: it bounds a verification's work.
const MAX_MODULUS_BYTES: usize = 512;

/// The hash of an RS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
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

    fn digest(self, message: &[u8], out: &mut Vec<u8>) {
        match self {
            Hash::Sha256 => out.extend_from_slice(&Sha256::digest(message)),
            Hash::Sha384 => out.extend_from_slice(&Sha384::digest(message)),
            Hash::Sha512 => out.extend_from_slice(&Sha512::digest(message)),
        }
    }
}

/// A public key prepared for verification.
pub(crate) struct Pkcs1Key {
    n: Modulus,
    e: u64,
}

impl Pkcs1Key {
    /// `None` when the key is outside what this path handles: then the
    /// caller verifies the general way.
    pub(crate) fn new(n_be: &[u8], e_be: &[u8]) -> Option<Pkcs1Key> {
        let e_be = &e_be[e_be.iter().position(|b| *b != 0).unwrap_or(e_be.len())..];
        if e_be.len() > 8 {
            return None;
        }
        let e = e_be.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // An even or tiny exponent is not RSA as JWS uses it.
        if e < 3 || e % 2 == 0 {
            return None;
        }
        let n = Modulus::from_be(n_be)?;
        (n.len() <= MAX_MODULUS_BYTES).then_some(Pkcs1Key { n, e })
    }

    /// Whether `signature` is a valid RSASSA-PKCS1-v1_5 signature of
    /// `message` with `hash`.
    pub(crate) fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        // RFC 8017 §8.2.2 step 1, and §5.2.2: the representative is < n
        // (`pow_be` refuses other lengths and values).
        let Some(em) = self.n.pow_be(signature, self.e) else {
            return false;
        };
        let k = self.n.len();
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + hash_len(hash);
        if k < t_len + 11 {
            return false;
        }
        let mut expected = Vec::with_capacity(k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(k - t_len - 1, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        hash.digest(message, &mut expected);
        em == expected
    }
}

fn hash_len(hash: Hash) -> usize {
    match hash {
        Hash::Sha256 => 32,
        Hash::Sha384 => 48,
        Hash::Sha512 => 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    use rsa::{Pkcs1v15Sign, RsaPublicKey};

    const PUBLIC: &str = include_str!("../../../tests/fixtures/rs256-public.pem");
    const PRIVATE: &str = include_str!("../../../tests/fixtures/rs256-private.pem");

    fn keys() -> (RsaPublicKey, Pkcs1Key, rsa::RsaPrivateKey) {
        use rsa::pkcs8::DecodePrivateKey;
        let public = RsaPublicKey::from_public_key_pem(PUBLIC).unwrap();
        let fast = Pkcs1Key::new(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(PRIVATE)
            .or_else(|_| {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                rsa::RsaPrivateKey::from_pkcs1_pem(PRIVATE)
            })
            .unwrap();
        (public, fast, private)
    }

    /// Agrees with the `rsa` crate on good signatures, every hash, and on
    /// signatures and messages with one bit flipped.
    #[test]
    fn agrees_with_the_rsa_crate() {
        let (public, fast, private) = keys();
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
        for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let (scheme, digest) = match hash {
                Hash::Sha256 => (
                    Pkcs1v15Sign::new::<Sha256>(),
                    Sha256::digest(message).to_vec(),
                ),
                Hash::Sha384 => (
                    Pkcs1v15Sign::new::<Sha384>(),
                    Sha384::digest(message).to_vec(),
                ),
                Hash::Sha512 => (
                    Pkcs1v15Sign::new::<Sha512>(),
                    Sha512::digest(message).to_vec(),
                ),
            };
            let signature = private.sign(scheme.clone(), &digest).unwrap();
            assert!(fast.verify(hash, message, &signature));
            assert!(public.verify(scheme, &digest, &signature).is_ok());
            for i in [0, 17, signature.len() - 1] {
                let mut bad = signature.clone();
                bad[i] ^= 1;
                assert!(!fast.verify(hash, message, &bad));
            }
            let mut other = message.to_vec();
            other[3] ^= 1;
            assert!(!fast.verify(hash, &other, &signature));
        }
        // A signature made with another hash does not verify.
        let digest = Sha256::digest(message);
        let signature = private
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .unwrap();
        assert!(!fast.verify(Hash::Sha512, message, &signature));
    }

    #[test]
    fn refuses_wrong_lengths_and_out_of_range_signatures() {
        let (public, fast, _) = keys();
        let n = public.n().to_bytes_be();
        assert!(!fast.verify(Hash::Sha256, b"m", &n[1..]));
        assert!(!fast.verify(Hash::Sha256, b"m", &n));
        assert!(!fast.verify(Hash::Sha256, b"m", &vec![0xff; n.len()]));
        assert!(!fast.verify(Hash::Sha256, b"m", &[]));
    }

    #[test]
    fn keys_outside_the_fast_path_are_declined() {
        assert!(Pkcs1Key::new(&[0xff; 1024], &[1, 0, 1]).is_none());
        assert!(Pkcs1Key::new(&[0xff; 256], &[1, 0, 0]).is_none());
        assert!(Pkcs1Key::new(&[0xff; 256], &[1; 9]).is_none());
        assert!(Pkcs1Key::new(&[0xfe; 256], &[1, 0, 1]).is_none());
    }
}
