//! TLS client settings shared by FTPS and SMTP: rustls with ring, the system's trust roots plus
//! an optional CA from the target's secret (certificates are always verified; there is no
//! "accept any certificate" switch), and a record of the certificate the server presented, so
//! a delivery receipt can name it.

use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// Installs ring as the process's rustls crypto provider. Idempotent; every TLS user calls it
/// (reqwest is built without a provider of its own).
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The operating system's trust roots, loaded once per process.
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!("system trust roots: {e}");
        }
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "system trust roots loaded");
        store
    })
}

/// A client configuration that verifies servers against the system roots (HTTPS clients:
/// the PSA APIs, a presigned link fetched by `ferry check`).
pub fn system_client_config() -> Result<ClientConfig, String> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(system_roots().clone())
        .with_no_client_auth())
}

/// The certificates in a PEM bundle (e.g. a `caSecretRef` value).
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA certificate: not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("CA certificate: no `BEGIN CERTIFICATE` block found".into());
    }
    Ok(certs)
}

/// The SHA-256 fingerprint of a DER certificate, as `openssl x509 -fingerprint -sha256`
/// prints it (`AB:CD:...`).
pub fn certificate_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// A client configuration and the fingerprint of the last certificate it verified.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// Share this one configuration between the connections to a server: its session cache is
    /// what lets an FTPS data connection resume the control connection's TLS session.
    pub config: Arc<ClientConfig>,
    seen: Arc<Mutex<Option<String>>>,
}

impl ClientTls {
    /// System roots plus the certificates of `extra_ca_pem`.
    pub fn new(extra_ca_pem: Option<&[u8]>) -> Result<ClientTls, String> {
        install_crypto_provider();
        let mut roots = system_roots().clone();
        if let Some(pem) = extra_ca_pem {
            for cert in parse_pem_certificates(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("TLS verifier: {e}"))?;
        let seen = Arc::new(Mutex::new(None));
        let verifier = Arc::new(RecordingVerifier {
            inner,
            seen: seen.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .dangerous() // only to install the recording wrapper; it always delegates
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            seen,
        })
    }

    /// The SHA-256 fingerprint of the certificate the server presented last, once verified.
    pub fn peer_fingerprint(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }
}

/// Verifies with webpki and remembers the end-entity certificate that passed.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(certificate_fingerprint(end_entity));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_refused_with_a_clear_message() {
        let err = parse_pem_certificates(b"not a certificate").unwrap_err();
        assert!(err.contains("BEGIN CERTIFICATE"), "{err}");
    }

    #[test]
    fn fingerprints_are_colon_separated_uppercase_sha256() {
        let fp = certificate_fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF"), "{fp}");
    }

    #[test]
    fn a_client_configuration_builds_with_the_system_roots_alone() {
        let tls = ClientTls::new(None).unwrap();
        assert!(tls.peer_fingerprint().is_none());
    }
}
