//! What the in-process test servers share: their TLS identity.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

// A throwaway self-signed P-256 certificate for this test server only.
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIULmT3sfBr15Uzh4iDh9BYp0cGKIQwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwScmRob3N0LWNsaWVudC10ZXN0MCAXDTI2MTEyMjAwMzI1NloY
DzIxMjYxMDI5MDAzMjU2WjAdMRswGQYDVQQDDBJyZGhvc3QtY2xpZW50LXRlc3Qw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASHvExTsqqTcEffT4SITWqNlGuJjzvK
iy32zyIOpQRlw3jcTlvNMOx7+EN4wblzsUKkhI/xCAEI4nDGJJ/ovPPHo1MwUTAd
BgNVHQ4EFgQUdIiHF7Kscco00yLebtuYdo0XVcgwHwYDVR0jBBgwFoAUdIiHF7Ks
cco00yLebtuYdo0XVcgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiB6RZvBB8VqVF504hC/Nftq7Apvs/lz7WF1+rFHCu6zYAIhAIEqyyMum+EpXu/8
OeRu6ASXhR2+LVSkC17vsJaxHJ1k
-----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfMJc9xhc0sLYyiE9
ueb+cKiCHBpUHxgSUpztd57dSyChRANCAASHvExTsqqTcEffT4SITWqNlGuJjzvK
iy32zyIOpQRlw3jcTlvNMOx7+EN4wblzsUKkhI/xCAEI4nDGJJ/ovPPH
-----END PRIVATE KEY-----";

/// A TLS acceptor with the throwaway certificate above.
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap(),
        )
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
