//! The host's TLS identity: a self-signed certificate generated on first start and kept in the
//! state directory (`tls/cert.pem`, `tls/key.pem` mode 0600), loaded on later starts so clients
//! that pinned its fingerprint keep trusting it. An admin may replace both files with a real
//! certificate (PEM chain, leaf first) and key.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::state_dir::{StateDir, annotate, create_private_dir, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("cannot generate the TLS certificate: {0}")]
    Generate(String),
    #[error("{path} is not usable: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{key} does not belong to {cert}; put the matching pair there, or remove both to have a new self-signed certificate generated"
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{cert} exists but its key {key} is missing; restore the key, or remove {cert} to have a new self-signed certificate generated"
    )]
    MissingKey { cert: PathBuf, key: PathBuf },
    #[error("{path} is readable by other users (mode {mode:o}); fix with `chmod 600 {path}`")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Certificate chain and key ready for `rustls::ServerConfig`, plus what clients and CredSSP need.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER, `AB:CD:…` (what `xfreerdp` shows and `/cert:` pins).
    pub fingerprint: String,
    /// The leaf's DER SubjectPublicKey (contents of the BIT STRING in SubjectPublicKeyInfo):
    /// what CredSSP binds to as the server `public_key`.
    pub public_key: Vec<u8>,
    /// True when this call created the certificate.
    pub generated: bool,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint.clone(),
            public_key: self.public_key.clone(),
            generated: self.generated,
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
        }
    }
}

/// The crypto provider for everything TLS in rdhost (aws-lc-rs, already used by IronRDP).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsIdentity {
    /// A server config (TLS 1.2 and 1.3, no client certificates) with this identity.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        Ok(Arc::new(config))
    }
}

/// Load the identity from the state directory, generating it on first start.
pub fn load_or_generate(state: &StateDir) -> Result<TlsIdentity, TlsError> {
    let (cert_path, key_path) = (state.cert_file(), state.key_file());
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => load(&cert_path, &key_path),
        (true, false) => Err(TlsError::MissingKey {
            cert: cert_path,
            key: key_path,
        }),
        (false, key_exists) => {
            create_private_dir(&state.tls_dir())?;
            // A key without certificate (e.g. an interrupted first start): certify that key.
            let key_pair = if key_exists {
                check_key_permissions(&key_path)?;
                let pem = fs::read_to_string(&key_path).map_err(|e| annotate(e, &key_path))?;
                rcgen::KeyPair::from_pem(&pem).map_err(|e| TlsError::Invalid {
                    path: key_path.clone(),
                    message: format!("{e} (expected a PKCS#8 PEM key)"),
                })?
            } else {
                let key_pair = generate_key()?;
                // Key first and 0600 from creation; the certificate is written last, so a
                // complete pair on disk means generation finished.
                write_atomic(&key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
                key_pair
            };
            let cert = self_signed(&key_pair)?;
            write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
            let mut identity = load(&cert_path, &key_path)?;
            identity.generated = true;
            Ok(identity)
        }
    }
}

/// RSA 2048: the key type every RDP client (mstsc back to Windows 7, FreeRDP, IronRDP) accepts.
fn generate_key() -> Result<rcgen::KeyPair, TlsError> {
    rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .map_err(|e| TlsError::Generate(e.to_string()))
}

fn self_signed(key_pair: &rcgen::KeyPair) -> Result<rcgen::Certificate, TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let host = hostname();
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(h) = &host {
        names.insert(0, h.clone());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        host.as_deref().unwrap_or("localhost"),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "rdhost self-signed");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    // mstsc requires Server Authentication in the EKU of an RDP certificate.
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    params.self_signed(key_pair).map_err(gen_err)
}

/// The host name if it can appear as a DNS SAN (otherwise only localhost/loopback are named).
fn hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.into_string().ok()?;
    let ok = !name.is_empty()
        && name.len() <= 253
        && name != "localhost"
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    ok.then_some(name)
}

fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Mean Gregorian year; off by at most a day around New Year, covered by the ±1 year margins.
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    let mode = fs::metadata(path)
        .map_err(|e| annotate(e, path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Load a PEM certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1).
pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsIdentity, TlsError> {
    let invalid = |path: &Path, message: String| TlsError::Invalid {
        path: path.to_owned(),
        message,
    };
    check_key_permissions(key_path)?;
    let cert_chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(cert_path, e.to_string()))?;
    let leaf = cert_chain
        .first()
        .ok_or_else(|| invalid(cert_path, "no CERTIFICATE in it".into()))?;
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| invalid(key_path, e.to_string()))?;

    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| invalid(key_path, e.to_string()))?;
    let spki = signer
        .public_key()
        .ok_or_else(|| invalid(key_path, "unsupported key type".into()))?;
    // The leaf embeds its SubjectPublicKeyInfo verbatim; the key matches iff its SPKI is there.
    if !contains(leaf.as_ref(), spki.as_ref()) {
        return Err(TlsError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        });
    }
    let public_key = subject_public_key(spki.as_ref())
        .ok_or_else(|| invalid(key_path, "malformed SubjectPublicKeyInfo".into()))?
        .to_vec();
    Ok(TlsIdentity {
        fingerprint: fingerprint(leaf.as_ref()),
        cert_chain,
        key,
        public_key,
        generated: false,
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
    })
}

/// SHA-256 of `der` as upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// One DER TLV: (tag, contents, rest). Definite lengths only, as DER requires.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`
/// → the BIT STRING's bytes (after its unused-bits octet, which must be 0).
fn subject_public_key(spki: &[u8]) -> Option<&[u8]> {
    let (0x30, seq, _) = der_tlv(spki)? else {
        return None;
    };
    let (0x30, _algorithm, rest) = der_tlv(seq)? else {
        return None;
    };
    let (0x03, bits, _) = der_tlv(rest)? else {
        return None;
    };
    let (&0, key) = bits.split_first()? else {
        return None;
    };
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn state() -> (tempfile::TempDir, StateDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::create(tmp.path().join("state")).unwrap();
        (tmp, dir)
    }

    #[test]
    fn generate_then_reload_gives_same_identity() {
        let (_tmp, dir) = state();
        let first = load_or_generate(&dir).unwrap();
        assert!(first.generated);
        assert_eq!(fs::metadata(dir.key_file()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.tls_dir()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        assert!(
            first
                .fingerprint
                .chars()
                .all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_eq!(first.fingerprint, fingerprint(first.cert_chain[0].as_ref()));
        // RSAPublicKey ::= SEQUENCE { modulus, exponent } of a 2048-bit key.
        let (tag, body, rest) = der_tlv(&first.public_key).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (tag, modulus, _) = der_tlv(body).unwrap();
        assert_eq!((tag, modulus.len()), (0x02, 257));

        let second = load_or_generate(&dir).unwrap();
        assert!(!second.generated);
        assert_eq!(second.fingerprint, first.fingerprint);
        assert_eq!(second.public_key, first.public_key);
        assert_eq!(second.cert_chain, first.cert_chain);
        second.server_config().unwrap();
    }

    #[test]
    fn certificate_names_localhost_and_loopback() {
        let (_tmp, dir) = state();
        let id = load_or_generate(&dir).unwrap();
        let der = id.cert_chain[0].as_ref();
        assert!(contains(der, b"localhost"));
        assert!(contains(der, &[0x87, 4, 127, 0, 0, 1]), "IP SAN 127.0.0.1");
        if let Some(h) = hostname() {
            assert!(contains(der, h.as_bytes()));
        }
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (_a, one) = state();
        let (_b, two) = state();
        load_or_generate(&one).unwrap();
        load_or_generate(&two).unwrap();
        fs::copy(two.key_file(), one.key_file()).unwrap();
        let err = load_or_generate(&one).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn loose_key_permissions_are_refused() {
        let (_tmp, dir) = state();
        load_or_generate(&dir).unwrap();
        fs::set_permissions(dir.key_file(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_generate(&dir).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn missing_key_is_an_error_and_missing_cert_is_regenerated_for_the_key() {
        let (_tmp, dir) = state();
        let first = load_or_generate(&dir).unwrap();
        fs::remove_file(dir.cert_file()).unwrap();
        let again = load_or_generate(&dir).unwrap();
        assert!(again.generated);
        assert_eq!(
            again.public_key, first.public_key,
            "same key, new certificate"
        );

        fs::remove_file(dir.key_file()).unwrap();
        let err = load_or_generate(&dir).unwrap_err();
        assert!(matches!(err, TlsError::MissingKey { .. }), "{err}");
    }

    #[test]
    fn garbage_files_are_reported() {
        let (_tmp, dir) = state();
        load_or_generate(&dir).unwrap();
        write_atomic(&dir.cert_file(), b"not pem", 0o644).unwrap();
        let err = load_or_generate(&dir).unwrap_err();
        assert!(
            matches!(err, TlsError::Invalid { ref path, .. } if path == &dir.cert_file()),
            "{err}"
        );
    }

    #[test]
    fn der_parsing_rejects_truncation() {
        assert_eq!(der_tlv(&[0x30, 0x03, 1, 2]), None);
        assert_eq!(der_tlv(&[0x30, 0x82, 0x01]), None);
        assert_eq!(
            der_tlv(&[0x04, 0x81, 0x01, 9]),
            Some((0x04, &[9u8][..], &[][..]))
        );
        assert_eq!(subject_public_key(&[0x30, 0x00]), None);
        // SEQUENCE { SEQUENCE {}, BIT STRING { 0 unused bits, AA BB } }
        assert_eq!(
            subject_public_key(&[0x30, 0x07, 0x30, 0x00, 0x03, 0x03, 0x00, 0xAA, 0xBB]),
            Some(&[0xAA, 0xBB][..])
        );
        assert_eq!(
            subject_public_key(&[0x30, 0x07, 0x30, 0x00, 0x03, 0x03, 0x01, 0xAA, 0xBB]),
            None
        );
    }
}
