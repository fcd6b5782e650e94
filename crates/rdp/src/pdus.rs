//! Slow-path PDUs the active loop sends: error info, deactivation, disconnect.

use ironrdp_core::encode_vec;
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason, SendDataIndication};
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ServerDeactivateAll, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
    StreamPriority,
};
use ironrdp_pdu::rdp::server_error_info::{ErrorInfo, ProtocolIndependentCode, ServerSetErrorInfoPdu};
use ironrdp_pdu::x224::X224;
use num_traits::FromPrimitive as _;

/// The MCS ids a connection settled on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Channels {
    pub io: u16,
    pub user: u16,
}

fn send_data(channels: Channels, control: ShareControlHeader) -> Vec<u8> {
    let user_data = encode_vec(&control).expect("share control PDU encodes");
    encode_vec(&X224(SendDataIndication { initiator_id: channels.user, channel_id: channels.io, user_data: user_data.into() }))
        .expect("send data indication encodes")
}

fn share_data(channels: Channels, pdu: ShareDataPdu) -> Vec<u8> {
    send_data(
        channels,
        ShareControlHeader {
            share_id: 0,
            pdu_source: channels.user,
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: pdu,
                stream_priority: StreamPriority::Undefined,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
        },
    )
}

pub(crate) fn set_error_info(channels: Channels, code: u32) -> Vec<u8> {
    let info = ErrorInfo::from_u32(code)
        .unwrap_or(ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::ServerDeniedConnection));
    share_data(channels, ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(info)))
}

pub(crate) fn deactivate_all(channels: Channels) -> Vec<u8> {
    send_data(
        channels,
        ShareControlHeader {
            share_id: 0,
            pdu_source: channels.user,
            share_control_pdu: ShareControlPdu::ServerDeactivateAll(ServerDeactivateAll),
        },
    )
}

pub(crate) fn shutdown_denied(channels: Channels) -> Vec<u8> {
    share_data(channels, ShareDataPdu::ShutdownDenied)
}

/// The server ends the connection: "provider initiated", as Windows sends it. ("User requested"
/// makes FreeRDP read an RPC-initiated disconnect, 0x1, as a logoff and exit 2.)
pub(crate) fn disconnect_ultimatum() -> Vec<u8> {
    encode_vec(&X224(DisconnectProviderUltimatum::from_reason(DisconnectReason::ProviderInitiated)))
        .expect("disconnect ultimatum encodes")
}

/// Save Session Info with Logon Info v2 (MS-RDPBCGR 2.2.10.1.1.2): tells the client which
/// session it landed in, as Windows does after a logon.
pub(crate) fn logon_info(channels: Channels, session_id: u32, user: &str, domain: &str) -> Vec<u8> {
    use ironrdp_pdu::rdp::session_info::{InfoData, InfoType, LogonInfo, LogonInfoVersion2, SaveSessionInfoPdu};
    let info = SaveSessionInfoPdu {
        info_type: InfoType::LogonLong,
        info_data: InfoData::LogonInfoV2(LogonInfoVersion2 {
            logon_info: LogonInfo { session_id, user_name: user.to_owned(), domain_name: domain.to_owned() },
        }),
    };
    share_data(channels, ShareDataPdu::SaveSessionInfo(info))
}
