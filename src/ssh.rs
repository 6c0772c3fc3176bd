//! SSH keys for the SFTP transport and the CLI: key generation (`ferry keygen`), host key
//! scanning (`ferry keyscan`), OpenSSH-style `SHA256:` fingerprints, and parsing of the pinned
//! host key lines of an `sftp` DeliveryTarget (`hostKeys`).
//!
//! Key files are written in the formats OpenSSH uses (`-----BEGIN OPENSSH PRIVATE KEY-----`,
//! `ssh-ed25519 AAAA... comment`), so they can be used with `ssh`, `sftp` and `ssh-keygen` too.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use russh::keys::ssh_key::rand_core::{TryCryptoRng, TryRng};
use russh::keys::ssh_key::{LineEnding, PrivateKey};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKeyOrCertificate};
use russh::{cipher, compression};

use crate::{Error, Result};

/// An SSH public key (the `ssh-key` crate's type, as russh uses it).
pub use russh::keys::PublicKey;

/// The kind of key [`generate_key`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519 (`ssh-ed25519`): small, fast, the recommended default.
    Ed25519,
    /// RSA (`ssh-rsa`, signing with rsa-sha2-256/512) of the given modulus size, for servers
    /// that accept nothing else.
    Rsa {
        /// Modulus size in bits, [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`].
        bits: usize,
    },
    /// ECDSA on NIST P-256 (`ecdsa-sha2-nistp256`).
    Ecdsa,
}

/// The RSA modulus size used when none is given.
pub const RSA_DEFAULT_BITS: usize = 4096;
/// The smallest RSA modulus [`generate_key`] accepts.
pub const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus [`generate_key`] accepts.
pub const RSA_MAX_BITS: usize = 16384;

impl KeyType {
    /// The file name OpenSSH's `ssh-keygen` gives this kind of key (`id_ed25519`, `id_rsa`,
    /// `id_ecdsa`); the public key goes in the same name plus `.pub`.
    pub fn file_stem(&self) -> &'static str {
        match self {
            KeyType::Ed25519 => "id_ed25519",
            KeyType::Rsa { .. } => "id_rsa",
            KeyType::Ecdsa => "id_ecdsa",
        }
    }
}

impl FromStr for KeyType {
    type Err = Error;

    /// `ed25519`, `rsa` ([`RSA_DEFAULT_BITS`] bits), `rsa-<bits>` (e.g. `rsa-3072`) or `ecdsa`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "ed25519" | "ssh-ed25519" => Ok(KeyType::Ed25519),
            "ecdsa" | "ecdsa-sha2-nistp256" => Ok(KeyType::Ecdsa),
            "rsa" | "ssh-rsa" => Ok(KeyType::Rsa {
                bits: RSA_DEFAULT_BITS,
            }),
            other => match other.strip_prefix("rsa-").map(str::parse::<usize>) {
                Some(Ok(bits)) => Ok(KeyType::Rsa { bits }),
                _ => Err(Error::Usage(format!(
                    "unknown key type `{s}` (expected ed25519, rsa, rsa-<bits> or ecdsa)"
                ))),
            },
        }
    }
}

/// A freshly generated key pair, in OpenSSH formats.
#[derive(Clone)]
pub struct GeneratedKey {
    /// The private key, OpenSSH PEM (`-----BEGIN OPENSSH PRIVATE KEY-----`), encrypted with
    /// bcrypt-pbkdf + aes256-ctr when a passphrase was given. A secret: store it in a Secret
    /// (file mode 0600), never print it.
    pub private_openssh: String,
    /// The public key line, `ssh-ed25519 AAAA... comment`, for `authorized_keys`.
    pub public_line: String,
    /// The public key's fingerprint, `SHA256:...`, as `ssh-keygen -l` shows it.
    pub fingerprint: String,
    /// The conventional file name: `id_ed25519`, `id_rsa` or `id_ecdsa`.
    pub file_stem: &'static str,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("private_openssh", &"(sensitive)")
            .field("public_line", &self.public_line)
            .field("fingerprint", &self.fingerprint)
            .field("file_stem", &self.file_stem)
            .finish()
    }
}

impl Drop for GeneratedKey {
    fn drop(&mut self) {
        // Best effort: do not leave the private key lying around in freed memory.
        let mut bytes = std::mem::take(&mut self.private_openssh).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// The operating system's random number generator, as the `rand_core` generator the key
/// types want.
struct OsRng;

impl TryRng for OsRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        // `generate_key` checks that the OS generator works before using this; a failure
        // afterwards cannot be worked around (never fall back to weak randomness).
        if let Err(e) = getrandom::fill(dst) {
            panic!("the operating system's random number generator failed: {e}");
        }
        Ok(())
    }
}

impl TryCryptoRng for OsRng {}

/// Generates a key pair of `kind` with `comment` (e.g. `ferry@host`), the private key encrypted
/// with `passphrase` when one is given (an empty passphrase means none).
///
/// RSA takes a few seconds at 4096 bits in optimised builds (much longer in debug builds);
/// Ed25519 and ECDSA are instant.
pub fn generate_key(
    kind: KeyType,
    comment: &str,
    passphrase: Option<&str>,
) -> Result<GeneratedKey> {
    if let KeyType::Rsa { bits } = kind
        && !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits)
    {
        return Err(Error::Usage(format!(
            "RSA key size {bits} is out of range: use {RSA_MIN_BITS} to {RSA_MAX_BITS} bits \
             ({RSA_DEFAULT_BITS} by default)"
        )));
    }
    let failed = |what: &str, e: &dyn fmt::Display| Error::Secret(format!("{what}: {e}"));
    let mut probe = [0u8; 32];
    getrandom::fill(&mut probe)
        .map_err(|e| failed("the operating system's random number generator failed", &e))?;

    let mut rng = OsRng;
    let keypair = match kind {
        KeyType::Ed25519 => KeypairData::from(Ed25519Keypair::random(&mut rng)),
        KeyType::Ecdsa => KeypairData::from(
            EcdsaKeypair::random(&mut rng, EcdsaCurve::NistP256)
                .map_err(|e| failed("generating the ECDSA key failed", &e))?,
        ),
        KeyType::Rsa { bits } => KeypairData::from(
            RsaKeypair::random(&mut rng, bits)
                .map_err(|e| failed("generating the RSA key failed", &e))?,
        ),
    };
    let key =
        PrivateKey::new(keypair, comment).map_err(|e| failed("building the key failed", &e))?;
    let public_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| failed("encoding the public key failed", &e))?;
    let fingerprint = fingerprint(key.public_key());
    let private_openssh = match passphrase.filter(|p| !p.is_empty()) {
        Some(p) => key
            .encrypt(&mut rng, p)
            .map_err(|e| failed("encrypting the private key failed", &e))?
            .to_openssh(LineEnding::LF),
        None => key.to_openssh(LineEnding::LF),
    }
    .map_err(|e| failed("encoding the private key failed", &e))?;
    Ok(GeneratedKey {
        private_openssh: private_openssh.as_str().to_owned(),
        public_line,
        fingerprint,
        file_stem: kind.file_stem(),
    })
}

/// The OpenSSH fingerprint of a public key: `SHA256:` and the unpadded base64 SHA-256 of the
/// key blob, as `ssh-keygen -l` and `ssh` show it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The fingerprint of an OpenSSH public key line (`ssh-ed25519 AAAA... comment`); the error
/// says what is wrong with the line.
pub fn fingerprint_line(line: &str) -> Result<String, String> {
    parse_public_key(line).map(|k| fingerprint(&k))
}

/// The OpenSSH public key line of `key` without a comment (`ssh-ed25519 AAAA...`), as pinned
/// in `hostKeys`.
pub fn public_line(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .unwrap_or_else(|_| format!("{} (unencodable key)", key.algorithm().as_str()))
}

/// The public key types accepted in `publicKeys` and `hostKeys`.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line: `TYPE BASE64 [comment]`, with the type repeated inside the blob.
pub fn check_public_key(line: &str) -> Result<(), String> {
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(
            "expected an OpenSSH public key line such as `ssh-ed25519 AAAAC3Nz... comment`".into(),
        );
    };
    if !KEY_TYPES.contains(&kind) {
        return Err(format!(
            "unsupported key type `{kind}` (expected one of {})",
            KEY_TYPES.join(", ")
        ));
    }
    let bytes =
        decode_base64(blob).ok_or_else(|| format!("the {kind} key data is not valid base64"))?;
    // The blob starts with a length-prefixed copy of the key type.
    let inner = bytes
        .get(0..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    match inner {
        Some(t) if t == kind.as_bytes() || (kind.starts_with("rsa-sha2") && t == b"ssh-rsa") => {
            Ok(())
        }
        _ => Err(format!(
            "the key data does not hold a {kind} key (truncated or pasted wrongly?)"
        )),
    }
}

/// Standard base64 as OpenSSH key lines use it (padding optional), by the `base64` crate.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s).ok()
}

/// Parses an OpenSSH public key line, `TYPE BASE64 [comment]`, as pinned in `hostKeys` or
/// listed in `authorized_keys`. RSA keys may be written with the `ssh-rsa`, `rsa-sha2-256` or
/// `rsa-sha2-512` type. The error says what is wrong (unknown type, bad base64, a blob that
/// does not hold the named key type) without repeating the whole line.
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    check_public_key(line)?;
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("expected an OpenSSH public key line such as `ssh-ed25519 AAAAC3Nz...`".into());
    };
    let bytes =
        decode_base64(blob).ok_or_else(|| format!("the {kind} key data is not valid base64"))?;
    let mut key = PublicKey::from_bytes(&bytes)
        .map_err(|e| format!("the {kind} key data is not a valid key: {e}"))?;
    let comment = parts.collect::<Vec<_>>().join(" ");
    key.set_comment(comment);
    Ok(key)
}

/// Whether `offered` is the same key as `pinned`: same type and same key data (comments are
/// ignored).
pub fn same_key(offered: &PublicKey, pinned: &PublicKey) -> bool {
    offered.key_data() == pinned.key_data()
}

/// A host key a server offered to [`scan_host_keys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedKey {
    /// The key as an OpenSSH line without comment, `ssh-ed25519 AAAA...`, ready to paste into
    /// `hostKeys`.
    pub line: String,
    /// Its fingerprint, `SHA256:...`.
    pub fingerprint: String,
    /// The key type, e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`.
    pub key_type: String,
}

/// The host key algorithms [`scan_host_keys`] asks for, one connection each, in this order.
fn scan_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
    ]
}

/// The host key algorithms russh can verify, most preferred first.
pub(crate) fn all_host_key_algorithms() -> Vec<Algorithm> {
    scan_algorithms()
}

/// The host key algorithms to ask a server for when `pinned` keys are trusted: only those
/// types, so a server with several host keys proves the one that was pinned.
pub(crate) fn host_key_algorithms_for(pinned: &[PublicKey]) -> Vec<Algorithm> {
    all_host_key_algorithms()
        .into_iter()
        .filter(|a| {
            pinned.iter().any(|k| match (k.algorithm(), a) {
                (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
                (k, a) => k == *a,
            })
        })
        .collect()
}

/// The client configuration Ferry uses for every SSH connection: the given host key
/// algorithms, the ciphers fastest with ring first (AES-GCM uses AES-NI/CLMUL), no
/// compression (reports are mostly compressed or compress poorly at these speeds, and zlib
/// would cap throughput), large windows, Nagle off, and keepalives to notice dead servers.
pub(crate) fn client_config(host_key_algorithms: Vec<Algorithm>) -> russh::client::Config {
    let preferred = russh::Preferred {
        key: Cow::Owned(host_key_algorithms),
        cipher: Cow::Borrowed(&[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_192_CTR,
            cipher::AES_128_CTR,
        ]),
        compression: Cow::Borrowed(&[compression::NONE]),
        ..russh::Preferred::default()
    };
    russh::client::Config {
        preferred,
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        keepalive_interval: Some(Duration::from_secs(20)),
        keepalive_max: 6,
        nodelay: true,
        ..Default::default()
    }
}

/// A client handler that records the host key the server proved and accepts it only when it
/// is one of `trusted` (none: reject everything, as a scan does).
pub(crate) struct HostKeyCheck {
    /// The keys to accept.
    pub trusted: Arc<Vec<PublicKey>>,
    /// The key the server offered, once it has.
    pub offered: Arc<Mutex<Option<PublicKey>>>,
}

impl HostKeyCheck {
    /// A handler trusting `trusted`, and the slot where it records the offered key.
    pub(crate) fn new(trusted: Arc<Vec<PublicKey>>) -> (Self, Arc<Mutex<Option<PublicKey>>>) {
        let offered = Arc::new(Mutex::new(None));
        (
            HostKeyCheck {
                trusted,
                offered: offered.clone(),
            },
            offered,
        )
    }
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Certificates are never asked for (no certificate algorithms are advertised); if a
        // server sends one anyway, its key must still be pinned.
        let key = server_public_key.public_key();
        let trusted = self.trusted.iter().any(|p| same_key(&key, p));
        if let Ok(mut slot) = self.offered.lock() {
            *slot = Some(key);
        }
        Ok(trusted)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects once asking only for `algorithm` and returns the key the server proved (its key
/// exchange signature is verified before the key is seen). `Ok(None)`: the server has no key of
/// that type.
pub(crate) async fn offered_host_key(
    host: &str,
    port: u16,
    algorithms: Vec<Algorithm>,
    timeout: Duration,
) -> Result<Option<PublicKey>, String> {
    let config = Arc::new(client_config(algorithms));
    let (handler, offered) = HostKeyCheck::new(Arc::new(Vec::new()));
    let attempt = russh::client::connect(config, (host, port), handler);
    let result = tokio::time::timeout(timeout, attempt).await;
    let seen = offered.lock().ok().and_then(|mut s| s.take());
    if let Some(key) = seen {
        return Ok(Some(key));
    }
    match result {
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f32())),
        Ok(Ok(_)) => Err("the server was accepted without showing a host key".into()),
        Ok(Err(russh::Error::NoCommonAlgo { .. })) => Ok(None),
        Ok(Err(e)) => Err(describe_connect_error(&e)),
    }
}

/// A connection error in words, without the library's internal names where they would only
/// confuse.
pub(crate) fn describe_connect_error(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::ConnectionTimeout | russh::Error::KeepaliveTimeout => {
            "the connection timed out".into()
        }
        other => other.to_string(),
    }
}

/// Every host key `host:port` offers, one connection per key algorithm (ed25519,
/// ecdsa-sha2-nistp256/384/521, rsa-sha2-512/256), each connection limited to `timeout`.
/// The keys are not trusted by this: verify a fingerprint out of band (with the server's
/// administrator) before pinning its line in `hostKeys`.
pub async fn scan_host_keys(host: &str, port: u16, timeout: Duration) -> Result<Vec<ScannedKey>> {
    let target = host_port(host, port);
    let attempts = scan_algorithms()
        .into_iter()
        .map(|a| offered_host_key(host, port, vec![a], timeout));
    let results = futures_util::future::join_all(attempts).await;
    let mut keys: Vec<ScannedKey> = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(Some(key)) => {
                let line = public_line(&key);
                if !keys.iter().any(|k| k.line == line) {
                    keys.push(ScannedKey {
                        line,
                        fingerprint: fingerprint(&key),
                        key_type: key.algorithm().as_str().to_string(),
                    });
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if keys.is_empty() {
        let message = match errors.first() {
            Some(e) => format!("cannot read the host keys: {e}"),
            None => "the server offers no host key of a type Ferry supports (ed25519, ecdsa, rsa)"
                .to_string(),
        };
        return Err(Error::Keyscan {
            address: target,
            message,
        });
    }
    Ok(keys)
}

/// The key material part of an OpenSSH key line (type and base64, without the comment), so
/// that a key is the same key whatever its comment says.
pub fn key_material(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A public key line as people compare it: type and `SHA256:` fingerprint, never the whole key.
pub fn key_label(line: &str) -> String {
    let key_type = line.split_whitespace().next().unwrap_or("?");
    match fingerprint_line(line) {
        Ok(fp) => format!("{key_type} {fp}"),
        Err(_) => format!("{key_type} (unparsable key)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_parse_from_their_names() {
        assert_eq!("ed25519".parse::<KeyType>().ok(), Some(KeyType::Ed25519));
        assert_eq!(
            "rsa".parse::<KeyType>().ok(),
            Some(KeyType::Rsa {
                bits: RSA_DEFAULT_BITS
            })
        );
        assert_eq!(
            "rsa-3072".parse::<KeyType>().ok(),
            Some(KeyType::Rsa { bits: 3072 })
        );
        assert_eq!("ECDSA".parse::<KeyType>().ok(), Some(KeyType::Ecdsa));
        assert!("dsa".parse::<KeyType>().is_err());
    }

    #[test]
    fn an_ed25519_key_round_trips_through_its_public_line() {
        let key = generate_key(KeyType::Ed25519, "me@example", None).expect("generate");
        assert!(key.public_line.starts_with("ssh-ed25519 AAAA"));
        assert!(key.public_line.ends_with(" me@example"));
        assert!(
            key.private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert_eq!(key.file_stem, "id_ed25519");
        let parsed = parse_public_key(&key.public_line).expect("parse");
        assert_eq!(fingerprint(&parsed), key.fingerprint);
        assert!(key.fingerprint.starts_with("SHA256:"));
        assert_eq!(key.fingerprint.len(), "SHA256:".len() + 43);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn an_encrypted_key_needs_its_passphrase() {
        let key = generate_key(KeyType::Ecdsa, "c", Some("open sesame")).expect("generate");
        assert!(russh::keys::decode_secret_key(&key.private_openssh, None).is_err());
        assert!(russh::keys::decode_secret_key(&key.private_openssh, Some("wrong")).is_err());
        let decoded = russh::keys::decode_secret_key(&key.private_openssh, Some("open sesame"))
            .expect("decrypt");
        assert_eq!(fingerprint(decoded.public_key()), key.fingerprint);
    }

    #[test]
    fn rsa_sizes_outside_the_range_are_refused() {
        for bits in [1024, 32768] {
            let e = generate_key(KeyType::Rsa { bits }, "", None).expect_err("refused");
            assert!(e.to_string().contains("out of range"), "{e}");
        }
    }

    #[test]
    fn pinned_lines_are_parsed_with_clear_errors() {
        let e = parse_public_key("ssh-ed25519").expect_err("no blob");
        assert!(e.contains("expected an OpenSSH public key line"), "{e}");
        let e = parse_public_key("ssh-dss AAAA").expect_err("dsa");
        assert!(e.contains("unsupported key type"), "{e}");
        let e = parse_public_key("ssh-ed25519 !!!").expect_err("base64");
        assert!(e.contains("not valid base64"), "{e}");
    }

    #[test]
    fn rsa_lines_may_name_the_signature_algorithm() {
        // The blob of an RSA key says `ssh-rsa`; OpenSSH also prints `rsa-sha2-512` lines.
        let rsa = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDL5Kxq2C5yMfJm4XK0bc6r7JLwAjRDvhU8d5fLuMBqKQtY3o9ANuAvVBcIi2G0vmpb2OhOJ3zwqSTBmTqXBd6jLbRuRcmc2mRqJmbzPW0ZsCbDGHYZQ3ZUEB6gNeVMB9aGU/0EdMVJ3z2iXLQ9H1aBIqEUBrGlnlt7Xb2N1lrFHw==";
        let a = parse_public_key(&format!("ssh-rsa {rsa}")).expect("ssh-rsa");
        let b = parse_public_key(&format!("rsa-sha2-512 {rsa} host")).expect("rsa-sha2-512");
        assert!(same_key(&a, &b));
        assert_eq!(public_line(&b), format!("ssh-rsa {rsa}"));
    }

    #[test]
    fn pinning_an_rsa_key_asks_for_the_rsa_sha2_algorithms_only() {
        let key = generate_key(KeyType::Ed25519, "", None).expect("generate");
        let ed = parse_public_key(&key.public_line).expect("parse");
        assert_eq!(host_key_algorithms_for(&[ed]), vec![Algorithm::Ed25519]);
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(host_port("::1", 22), "[::1]:22");
        assert_eq!(host_port("example.com", 2222), "example.com:2222");
    }
}
