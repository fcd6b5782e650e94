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

/// The share id of our Demand Active and of every share-control PDU after it (MS-RDPBCGR
/// 2.2.1.13.1.1). Non-zero, as Windows has it (0x10000 + the server channel id): rdesktop waits
/// for a Demand Active until its share id is set, and a zero one never is.
pub(crate) const SHARE_ID: u32 = 0x0001_03EA;

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
            share_id: SHARE_ID,
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
            share_id: SHARE_ID,
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

/// The server's Synchronize, Control (Cooperate) and Control (Granted Control) PDUs
/// (MS-RDPBCGR 2.2.1.19-2.2.1.21): the part of the server's connection finalization that follows
/// the client's Confirm Active, not its Font List (see `accept.rs`, `sequence_step`).
pub(crate) fn finalization_start(channels: Channels) -> Vec<u8> {
    use ironrdp_pdu::rdp::capability_sets::SERVER_CHANNEL_ID;
    use ironrdp_pdu::rdp::finalization_messages::{ControlAction, ControlPdu, SynchronizePdu};
    let mut out = share_data(channels, ShareDataPdu::Synchronize(SynchronizePdu { target_user_id: channels.user }));
    out.extend(share_data(channels, ShareDataPdu::Control(ControlPdu { action: ControlAction::Cooperate, grant_id: 0, control_id: 0 })));
    out.extend(share_data(
        channels,
        ShareDataPdu::Control(ControlPdu {
            action: ControlAction::GrantedControl,
            grant_id: channels.user,
            control_id: u32::from(SERVER_CHANNEL_ID),
        }),
    ));
    out
}

/// `sent`, a share-control PDU from IronRDP's acceptor (which uses share id 0), with our
/// [`SHARE_ID`]; if it is the Demand Active and `bits_per_pixel` is given, announcing that as the
/// session's colour depth (the Bitmap capability's preferredBitsPerPixel). `None` when `sent` is
/// no share-control PDU.
pub(crate) fn our_share_pdu(sent: &[u8], bits_per_pixel: Option<u16>) -> Option<Vec<u8>> {
    use ironrdp_core::decode;
    use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
    let X224(indication) = decode::<X224<SendDataIndication<'_>>>(sent).ok()?;
    let mut control: ShareControlHeader = decode(indication.user_data.as_ref()).ok()?;
    control.share_id = SHARE_ID;
    if let (ShareControlPdu::ServerDemandActive(demand), Some(bits_per_pixel)) = (&mut control.share_control_pdu, bits_per_pixel) {
        for cap in &mut demand.pdu.capability_sets {
            if let CapabilitySet::Bitmap(bitmap) = cap {
                bitmap.pref_bits_per_pix = bits_per_pixel;
            }
        }
    }
    let user_data = encode_vec(&control).ok()?;
    encode_vec(&X224(SendDataIndication { initiator_id: indication.initiator_id, channel_id: indication.channel_id, user_data: user_data.into() }))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::decode;
    use ironrdp_pdu::rdp::capability_sets::{Bitmap, CapabilitySet, DemandActive, ServerDemandActive};
    use ironrdp_pdu::rdp::finalization_messages::ControlAction;

    const CHANNELS: Channels = Channels { io: 1003, user: 1007 };

    /// The share data PDUs in concatenated send-data indications.
    fn share_data_pdus(mut bytes: &[u8]) -> Vec<(u16, ShareDataPdu)> {
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            let X224(indication) = decode::<X224<SendDataIndication<'_>>>(&bytes[..len]).unwrap();
            assert_eq!((indication.initiator_id, indication.channel_id), (CHANNELS.user, CHANNELS.io));
            let control: ShareControlHeader = decode(indication.user_data.as_ref()).unwrap();
            assert_eq!(control.share_id, SHARE_ID);
            let ShareControlPdu::Data(data) = control.share_control_pdu else { panic!("not a data PDU") };
            found.push((control.pdu_source, data.share_data_pdu));
            bytes = &bytes[len..];
        }
        found
    }

    #[test]
    fn finalization_start_is_synchronize_cooperate_granted_control() {
        let pdus = share_data_pdus(&finalization_start(CHANNELS));
        assert_eq!(pdus.len(), 3);
        match &pdus[0].1 {
            ShareDataPdu::Synchronize(s) => assert_eq!(s.target_user_id, CHANNELS.user),
            other => panic!("first is {other:?}"),
        }
        match &pdus[1].1 {
            ShareDataPdu::Control(c) => assert_eq!(c.action, ControlAction::Cooperate),
            other => panic!("second is {other:?}"),
        }
        match &pdus[2].1 {
            ShareDataPdu::Control(c) => {
                assert_eq!((c.action, c.grant_id, c.control_id), (ControlAction::GrantedControl, CHANNELS.user, 0x03EA))
            }
            other => panic!("third is {other:?}"),
        }
    }

    fn demand_active(share_id: u32, bpp: u16) -> Vec<u8> {
        send_data(
            CHANNELS,
            ShareControlHeader {
                share_id,
                pdu_source: CHANNELS.io,
                share_control_pdu: ShareControlPdu::ServerDemandActive(ServerDemandActive {
                    pdu: DemandActive {
                        source_descriptor: "RDP".into(),
                        capability_sets: vec![CapabilitySet::Bitmap(Bitmap {
                            pref_bits_per_pix: bpp,
                            desktop_width: 1024,
                            desktop_height: 768,
                            desktop_resize_flag: true,
                            drawing_flags: ironrdp_pdu::rdp::capability_sets::BitmapDrawingFlags::empty(),
                        })],
                    },
                }),
            },
        )
    }

    #[test]
    fn the_demand_active_announces_our_share_id_and_the_session_depth() {
        let rewritten = our_share_pdu(&demand_active(0, 32), Some(16)).unwrap();
        assert_eq!(rewritten, demand_active(SHARE_ID, 16), "only the share id and the depth change");
        assert_eq!(our_share_pdu(&demand_active(0, 32), None).unwrap(), demand_active(SHARE_ID, 32));
        // Other share-control PDUs get the share id only.
        let font_map = share_data(CHANNELS, ShareDataPdu::FontMap(Default::default()));
        let X224(indication) = decode::<X224<SendDataIndication<'_>>>(&font_map).unwrap();
        let mut control: ShareControlHeader = decode(indication.user_data.as_ref()).unwrap();
        control.share_id = 0;
        assert_eq!(our_share_pdu(&send_data(CHANNELS, control), Some(16)).unwrap(), font_map);
        assert!(our_share_pdu(&[0x03, 0x00], Some(16)).is_none(), "not a PDU at all");
    }
}
