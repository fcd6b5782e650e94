//! What the in-process test servers share: their TLS identity, capabilities and the start of
//! the acceptor's sequence.

use std::sync::Arc;

use ironrdp_acceptor::{Acceptor, BeginResult};
use ironrdp_pdu::rdp::capability_sets::{self, CapabilitySet, CmdFlags, GeneralExtraFlags, InputFlags};
use ironrdp_tokio::TokioFramed;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

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

/// What a test server of `width` x `height` announces: fast-path output, 32-bit bitmaps that
/// may be resized, surface commands, pointers, `input` flags, virtual channels, 8 MiB updates.
pub fn server_capabilities(width: u16, height: u16, input: InputFlags) -> Vec<CapabilitySet> {
    vec![
        CapabilitySet::General(capability_sets::General {
            extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED,
            refresh_rect_support: true,
            ..Default::default()
        }),
        CapabilitySet::Bitmap(capability_sets::Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: width,
            desktop_height: height,
            desktop_resize_flag: true,
            drawing_flags: capability_sets::BitmapDrawingFlags::empty(),
        }),
        CapabilitySet::Order(capability_sets::Order::new(
            capability_sets::OrderFlags::empty(),
            capability_sets::OrderSupportExFlags::empty(),
            0,
            0,
        )),
        CapabilitySet::SurfaceCommands(capability_sets::SurfaceCommands {
            flags: CmdFlags::SET_SURFACE_BITS | CmdFlags::FRAME_MARKER,
        }),
        CapabilitySet::Pointer(capability_sets::Pointer {
            color_pointer_cache_size: 32,
            pointer_cache_size: 32,
        }),
        CapabilitySet::Input(capability_sets::Input {
            input_flags: input,
            keyboard_layout: 0,
            keyboard_type: None,
            keyboard_subtype: 0,
            keyboard_function_key: 12,
            keyboard_ime_filename: String::new(),
        }),
        CapabilitySet::VirtualChannel(capability_sets::VirtualChannel {
            flags: capability_sets::VirtualChannelFlags::NO_COMPRESSION,
            chunk_size: None,
        }),
        CapabilitySet::MultiFragmentUpdate(capability_sets::MultifragmentUpdate {
            max_request_size: 8 * 1024 * 1024,
        }),
    ]
}

/// The acceptor's first steps on `tcp`: negotiation, then TLS with the throwaway certificate.
/// Panics when the client does not ask for TLS.
pub async fn accept_tls(tcp: TcpStream, acceptor: &mut Acceptor) -> TokioFramed<TlsStream<TcpStream>> {
    let BeginResult::ShouldUpgrade(tcp) = ironrdp_acceptor::accept_begin(TokioFramed::new(tcp), acceptor).await.unwrap() else {
        panic!("client did not ask for TLS");
    };
    let tls = tls_acceptor().accept(tcp).await.unwrap();
    acceptor.mark_security_upgrade_as_done();
    TokioFramed::new(tls)
}
