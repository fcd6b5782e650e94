//! Who a client is, read from what it sends during the connection sequence: the pre-connection
//! PDU, the GCC Client Core Data in its MCS Connect Initial, and its Client Info PDU.
//!
//! IronRDP's acceptor keeps most of this to itself, so the connection sequence decodes the same
//! PDUs it passes to the acceptor (see `accept.rs`).

use std::net::SocketAddr;

use ironrdp_core::decode;
use ironrdp_pdu::gcc::ClientEarlyCapabilityFlags;
use ironrdp_pdu::mcs::{ConnectInitial, SendDataIndication, SendDataRequest};
use ironrdp_pdu::pcb::PreconnectionBlob;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
use ironrdp_pdu::x224::{X224, X224Data};
use rdhost_desktop::{KeyboardLayout, Size};

/// Who the client is and what it asked for. Every field is the client's own claim, except
/// `peer` (the transport's) and `user` after NLA (the account the client proved it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDetails {
    /// The other end of the connection, as the transport sees it.
    pub peer: SocketAddr,
    /// The user the client logs on as: from its Client Info PDU, or the account NLA proved.
    pub user: String,
    pub domain: Option<String>,
    /// The client's computer name (GCC Client Core Data; at most 15 characters).
    pub client_name: String,
    pub client_build: u32,
    /// The client's own idea of its address (Client Info extra info); empty when not sent.
    pub client_address: String,
    /// The program the client asks to start instead of the shell, and where (Client Info).
    pub working_dir: String,
    pub alternate_shell: String,
    /// The pre-connection PDU's id: the session the client asks for (`xfreerdp /pcid:ID`).
    pub pcb_id: Option<u32>,
    /// The pre-connection PDU's v2 string (`xfreerdp /pcb:TEXT`).
    pub pcb_string: Option<String>,
    /// The desktop size: what the client asked for, and once the connection sequence has
    /// finished, what the host announced (the screen it starts with).
    pub size: Size,
    pub keyboard_layout: KeyboardLayout,
    /// The client speaks the graphics pipeline (core data earlyCapabilityFlags
    /// RNS_UD_CS_SUPPORT_DYNVC_GFX_PROTOCOL): it may be offered the EGFX channel.
    pub gfx: bool,
}

impl ClientDetails {
    /// What is known before the client's first RDP PDU.
    pub(crate) fn new(peer: SocketAddr, pcb: Option<PreconnectionBlob>, default_size: Size) -> Self {
        let (pcb_id, pcb_string) = match pcb {
            Some(pcb) => (Some(pcb.id), pcb.v2_payload.filter(|s| !s.is_empty())),
            None => (None, None),
        };
        Self {
            peer,
            user: String::new(),
            domain: None,
            client_name: String::new(),
            client_build: 0,
            client_address: String::new(),
            working_dir: String::new(),
            alternate_shell: String::new(),
            pcb_id,
            pcb_string,
            size: default_size,
            keyboard_layout: KeyboardLayout::default(),
            gfx: false,
        }
    }

    /// Take the client core data from an MCS Connect Initial PDU (X.224 data TPDU).
    pub(crate) fn read_connect_initial(&mut self, pdu: &[u8]) -> Result<(), String> {
        let data: X224<X224Data<'_>> = decode(pdu).map_err(|e| e.to_string())?;
        let initial: ConnectInitial = decode(data.0.data.as_ref()).map_err(|e| e.to_string())?;
        let core = &initial.conference_create_request.gcc_blocks().core;
        self.client_name = trimmed(&core.client_name);
        self.client_build = core.client_build;
        self.size = Size::new(core.desktop_width, core.desktop_height);
        if core.keyboard_layout != 0 {
            self.keyboard_layout = KeyboardLayout(core.keyboard_layout);
        }
        self.gfx = core
            .optional_data
            .early_capability_flags
            .is_some_and(|flags| flags.contains(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL));
        Ok(())
    }

    /// Take the Client Info PDU's fields; returns the password it carries (checked by the
    /// caller, never kept here).
    pub(crate) fn read_client_info(&mut self, pdu: &[u8]) -> Result<String, String> {
        let data: X224<SendDataRequest<'_>> = decode(pdu).map_err(|e| e.to_string())?;
        let info: ClientInfoPdu = decode(data.0.user_data.as_ref()).map_err(|e| e.to_string())?;
        let info = info.client_info;
        self.user = info.credentials.username;
        self.domain = info.credentials.domain.filter(|d| !d.is_empty());
        self.working_dir = trimmed(&info.work_dir);
        self.alternate_shell = trimmed(&info.alternate_shell);
        self.client_address = trimmed(&info.extra_info.address);
        Ok(info.credentials.password)
    }
}

/// The desktop size in our own Demand Active PDU, when `sent` is one: what the client was told
/// its screen is.
pub(crate) fn announced_size(sent: &[u8]) -> Option<Size> {
    let data: X224<SendDataIndication<'_>> = decode(sent).ok()?;
    let control: ShareControlHeader = decode(data.0.user_data.as_ref()).ok()?;
    let ShareControlPdu::ServerDemandActive(demand) = control.share_control_pdu else { return None };
    demand.pdu.capability_sets.iter().find_map(|cap| match cap {
        CapabilitySet::Bitmap(bitmap) => Some(Size::new(bitmap.desktop_width, bitmap.desktop_height)),
        _ => None,
    })
}

/// Strings in these PDUs are fixed-size fields or NUL-terminated; keep the text only.
fn trimmed(text: &str) -> String {
    text.trim_end_matches('\0').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::rdp::client_info::{
        AddressFamily, ClientInfo, ClientInfoFlags, CompressionType, Credentials, ExtendedClientInfo,
        ExtendedClientOptionalInfo,
    };
    use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, BasicSecurityHeaderFlags};

    fn peer() -> SocketAddr {
        "192.0.2.7:50000".parse().unwrap()
    }

    fn client_info_pdu() -> Vec<u8> {
        let info = ClientInfoPdu {
            security_header: BasicSecurityHeader { flags: BasicSecurityHeaderFlags::INFO_PKT },
            client_info: ClientInfo {
                credentials: Credentials { username: "alice".into(), password: "secret".into(), domain: Some("LAB".into()) },
                password_cookie: None,
                code_page: 0,
                flags: ClientInfoFlags::UNICODE | ClientInfoFlags::MOUSE | ClientInfoFlags::LOGON_NOTIFY,
                compression_type: CompressionType::K8,
                alternate_shell: "/usr/bin/htop".into(),
                work_dir: "/srv".into(),
                extra_info: ExtendedClientInfo {
                    address_family: AddressFamily::INET,
                    address: "10.1.2.3".into(),
                    dir: "C:\\client".into(),
                    optional_data: ExtendedClientOptionalInfo::default(),
                },
            },
        };
        let user_data = encode_vec(&info).unwrap();
        encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: 1003, user_data: user_data.into() })).unwrap()
    }

    #[test]
    fn client_info_fields_are_kept_and_the_password_returned() {
        let mut details = ClientDetails::new(peer(), None, Size::new(1024, 768));
        let password = details.read_client_info(&client_info_pdu()).unwrap();
        assert_eq!(password, "secret");
        assert_eq!(details.user, "alice");
        assert_eq!(details.domain.as_deref(), Some("LAB"));
        assert_eq!(details.alternate_shell, "/usr/bin/htop");
        assert_eq!(details.working_dir, "/srv");
        assert_eq!(details.client_address, "10.1.2.3");
        assert_eq!(details.peer, peer());
    }

    #[test]
    fn garbage_is_not_client_info() {
        let mut details = ClientDetails::new(peer(), None, Size::new(1024, 768));
        assert!(details.read_client_info(&[3, 0, 0, 8, 2, 0xF0, 0x80, 0x7F]).is_err());
        assert!(details.read_connect_initial(&[3, 0, 0, 4]).is_err());
        assert_eq!(details, ClientDetails::new(peer(), None, Size::new(1024, 768)));
    }

    #[test]
    fn the_announced_size_is_read_from_our_demand_active() {
        use ironrdp_pdu::mcs::SendDataIndication;
        use ironrdp_pdu::rdp::capability_sets::{Bitmap, BitmapDrawingFlags, DemandActive, ServerDemandActive};
        let demand = ShareControlHeader {
            share_id: 0,
            pdu_source: 1002,
            share_control_pdu: ShareControlPdu::ServerDemandActive(ServerDemandActive {
                pdu: DemandActive {
                    source_descriptor: "RDP".into(),
                    capability_sets: vec![CapabilitySet::Bitmap(Bitmap {
                        pref_bits_per_pix: 32,
                        desktop_width: 1280,
                        desktop_height: 720,
                        desktop_resize_flag: true,
                        drawing_flags: BitmapDrawingFlags::empty(),
                    })],
                },
            }),
        };
        let user_data = encode_vec(&demand).unwrap();
        let sent = encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1003, user_data: user_data.into() })).unwrap();
        assert_eq!(announced_size(&sent), Some(Size::new(1280, 720)));
        assert_eq!(announced_size(&client_info_pdu()), None, "not a Demand Active");
    }

    #[test]
    fn preconnection_v2_string_and_id() {
        let pcb = PreconnectionBlob { version: ironrdp_pdu::pcb::PcbVersion::V2, id: 3, v2_payload: Some("vm-7".into()) };
        let details = ClientDetails::new(peer(), Some(pcb), Size::new(800, 600));
        assert_eq!((details.pcb_id, details.pcb_string.as_deref()), (Some(3), Some("vm-7")));
        let details = ClientDetails::new(peer(), None, Size::new(800, 600));
        assert_eq!((details.pcb_id, details.pcb_string), (None, None));
    }
}
