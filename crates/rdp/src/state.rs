//! The active phase's decisions without I/O: one PDU from the client in, what to do out.
//!
//! The terminal's async loop reads PDUs and carries out the actions; everything a PDU means is
//! decided here, so it can be tested with hand-built PDUs and no sockets.

use ironrdp_core::decode;
use ironrdp_pdu::Action;
use ironrdp_pdu::input::fast_path::FastPathInput;
use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, McsMessage};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::x224::X224;
use ironrdp_dvc::{DrdynvcServer, DvcMessage, encode_dvc_messages};
use ironrdp_svc::{ChannelFlags, StaticChannelSet, SvcMessage, server_encode_svc_messages};
use rdhost_desktop::{InputEvent, Rect};
use rdhost_encomsp::EncomspPdu;
use tracing::debug;

use crate::encomsp::{ControlRequest, EncomspChannel};
use crate::gfx::{GfxChannel, GfxError, GfxStatus, InFlight};
use crate::input;
use crate::pdus::{self, Channels};

/// What the terminal does about a client's PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActiveAction {
    /// Hand this event to the input sink.
    Input(InputEvent),
    /// Send these bytes to the client (a shutdown refusal, a virtual channel's reply).
    Write(Vec<u8>),
    /// Suppress Output: the client hid its window (`true`) or shows it again (`false`).
    Suppress(bool),
    /// Refresh Rect: the client wants this part of its screen again.
    Refresh(Rect),
    /// Disconnect Provider Ultimatum: the client is leaving.
    Leave,
    /// OD_PARTICIPANT_CTRL_CHANGE on encomsp: the client asks for a control level.
    ControlRequest(ControlRequest),
}

/// A PDU the terminal cannot make sense of; the connection cannot go on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed PDU from client: {0}")]
pub(crate) struct Malformed(pub String);

fn malformed(what: impl std::fmt::Display) -> Malformed {
    Malformed(what.to_string())
}

/// A connection's active-phase state: its channel ids, its virtual channels, and where the
/// client's pointer last was.
pub(crate) struct ActiveState {
    channels: Channels,
    static_channels: StaticChannelSet,
    /// A wheel event's own position is not to be trusted (FreeRDP sends 0, 0): wheel events
    /// take the position of the last pointer event instead.
    pointer_at: (u16, u16),
}

impl ActiveState {
    pub fn new(channels: Channels, static_channels: StaticChannelSet) -> Self {
        Self { channels, static_channels, pointer_at: (0, 0) }
    }

    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// The virtual channels, handed to a deactivation-reactivation (the acceptor owns them
    /// until it finishes, then [`ActiveState::reactivated`] takes them back).
    pub fn take_static_channels(&mut self) -> StaticChannelSet {
        std::mem::take(&mut self.static_channels)
    }

    /// The virtual channels, for a channel's own module to reach its processor (clipboard.rs).
    pub fn static_channels_mut(&mut self) -> &mut StaticChannelSet {
        &mut self.static_channels
    }

    pub fn reactivated(&mut self, channels: Channels, static_channels: StaticChannelSet) {
        self.channels = channels;
        self.static_channels = static_channels;
    }

    /// Whether the client joined the `encomsp` channel (it lists it; xfreerdp does in
    /// assistance mode).
    pub fn encomsp_joined(&self) -> bool {
        self.static_channels.get_channel_id_by_type::<EncomspChannel>().is_some()
    }

    /// `pdu` as bytes to write on the encomsp channel; `None` when the client did not join it.
    pub fn encomsp_message(&self, pdu: &EncomspPdu) -> Option<Result<Vec<u8>, String>> {
        let channel_id = self.static_channels.get_channel_id_by_type::<EncomspChannel>()?;
        Some(
            server_encode_svc_messages(vec![SvcMessage::from(pdu.encode())], channel_id, self.channels.user)
                .map_err(|e| format!("encomsp PDU: {e}")),
        )
    }

    /// What the virtual channels say first (the dynamic-channel server offers its capabilities
    /// and opens display control). Once per connection, not again after a reactivation.
    pub fn start_channels(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for (_, channel, channel_id) in self.static_channels.iter_mut() {
            let Some(channel_id) = channel_id else { continue };
            let messages = channel.start().map_err(|e| format!("virtual channel start: {e}"))?;
            let bytes = server_encode_svc_messages(messages, channel_id, self.channels.user)
                .map_err(|e| format!("virtual channel start: {e}"))?;
            out.extend(bytes);
        }
        Ok(out)
    }

    /// The graphics pipeline channel, when the client opened it (and has not closed it).
    pub fn gfx(&self) -> Option<&GfxChannel> {
        let drdynvc = self.static_channels.get_by_type::<DrdynvcServer>()?.channel_processor_downcast_ref::<DrdynvcServer>()?;
        let id = drdynvc.get_channel_id_by_type::<GfxChannel>()?;
        Some(drdynvc.dvc_by_id::<GfxChannel>(id)?.processor())
    }

    /// What the graphics pipeline offers now; `None` while it is not open (not offered, declined
    /// by the client, or closed).
    pub fn gfx_status(&self) -> Option<GfxStatus> {
        self.gfx().map(GfxChannel::status)
    }

    /// The pipeline's unacknowledged frames (pacing), when it is open.
    pub fn gfx_frames(&self) -> Option<&InFlight> {
        self.gfx().map(GfxChannel::frames)
    }

    /// Bytes to write for what `make` builds on the graphics pipeline channel.
    pub fn gfx_send(&mut self, make: impl FnOnce(&mut GfxChannel) -> Result<Vec<DvcMessage>, GfxError>) -> Result<Vec<u8>, GfxError> {
        let user = self.channels.user;
        let svc_id = self.static_channels.get_channel_id_by_type::<DrdynvcServer>().ok_or(GfxError::NotReady)?;
        let drdynvc = self
            .static_channels
            .get_by_type_mut::<DrdynvcServer>()
            .and_then(|svc| svc.channel_processor_downcast_mut::<DrdynvcServer>())
            .ok_or(GfxError::NotReady)?;
        let dvc_id = drdynvc.get_channel_id_by_type::<GfxChannel>().ok_or(GfxError::NotReady)?;
        let mut dvc = drdynvc.dvc_by_id_mut::<GfxChannel>(dvc_id).ok_or(GfxError::NotReady)?;
        let messages = make(dvc.processor_mut())?;
        let svc_messages = encode_dvc_messages(dvc_id, messages, ChannelFlags::SHOW_PROTOCOL).map_err(|e| GfxError::Encode(e.to_string()))?;
        server_encode_svc_messages(svc_messages, svc_id, user).map_err(|e| GfxError::Encode(e.to_string()))
    }

    /// Decide what one PDU from the client means.
    pub fn process(&mut self, frame: &[u8]) -> Result<Vec<ActiveAction>, Malformed> {
        let first = *frame.first().ok_or_else(|| malformed("empty PDU"))?;
        let action = Action::from_fp_output_header(first).map_err(|_| malformed("unknown PDU header"))?;
        let mut events = Vec::new();
        let mut actions = Vec::new();
        match action {
            Action::FastPath => {
                let input: FastPathInput = decode(frame).map_err(|e| malformed(format_args!("fast-path input: {e}")))?;
                for event in input.input_events() {
                    input::from_fastpath(event, &mut events);
                }
            }
            Action::X224 => {
                let message: X224<McsMessage<'_>> = decode(frame).map_err(|e| malformed(format_args!("MCS: {e}")))?;
                match message.0 {
                    McsMessage::SendDataRequest(data) if data.channel_id == self.channels.io => {
                        let control: ShareControlHeader =
                            decode(data.user_data.as_ref()).map_err(|e| malformed(format_args!("share control: {e}")))?;
                        let ShareControlPdu::Data(header) = control.share_control_pdu else {
                            debug!("ignoring share control PDU");
                            return Ok(actions);
                        };
                        match header.share_data_pdu {
                            ShareDataPdu::Input(pdu) => {
                                for event in &pdu.0 {
                                    input::from_slow_path(event, &mut events);
                                }
                            }
                            // The client asks to log off; Windows answers "denied" and the client
                            // then disconnects, leaving the session running.
                            ShareDataPdu::ShutdownRequest => actions.push(ActiveAction::Write(pdus::shutdown_denied(self.channels))),
                            ShareDataPdu::SuppressOutput(pdu) => actions.push(ActiveAction::Suppress(pdu.desktop_rect.is_none())),
                            ShareDataPdu::RefreshRectangle(pdu) => {
                                // Inclusive bounds on the wire.
                                let rect = pdu.areas_to_refresh.iter().fold(Rect::new(0, 0, 0, 0), |acc, r| {
                                    acc.union(Rect::new(
                                        r.left,
                                        r.top,
                                        r.right.saturating_sub(r.left).saturating_add(1),
                                        r.bottom.saturating_sub(r.top).saturating_add(1),
                                    ))
                                });
                                actions.push(ActiveAction::Refresh(rect));
                            }
                            other => debug!(pdu = ?std::mem::discriminant(&other), "ignoring share data PDU"),
                        }
                    }
                    McsMessage::SendDataRequest(data) => {
                        let channel_id = data.channel_id;
                        let Some(svc) = self.static_channels.get_by_channel_id_mut(channel_id) else {
                            debug!(channel_id, "data on an unknown channel");
                            return Ok(actions);
                        };
                        crate::clipboard::check_channel_message(&data.user_data).map_err(malformed)?;
                        let responses =
                            svc.process(&data.user_data).map_err(|e| malformed(format_args!("virtual channel {channel_id}: {e}")))?;
                        if let Some(encomsp) = svc.channel_processor_downcast_mut::<EncomspChannel>() {
                            // MS-RDPEMC 3.3.5.1: a malformed PDU SHOULD end the connection.
                            for pdu in encomsp.take().map_err(malformed)? {
                                match pdu {
                                    EncomspPdu::ParticipantCtrlChange { flags, .. } => {
                                        actions.push(ActiveAction::ControlRequest(ControlRequest::from_flags(flags)))
                                    }
                                    other => debug!(pdu_type = other.pdu_type(), "ignoring encomsp PDU from client"),
                                }
                            }
                        }
                        let bytes = server_encode_svc_messages(responses, channel_id, self.channels.user)
                            .map_err(|e| malformed(format_args!("virtual channel reply: {e}")))?;
                        if !bytes.is_empty() {
                            actions.push(ActiveAction::Write(bytes));
                        }
                    }
                    McsMessage::DisconnectProviderUltimatum(DisconnectProviderUltimatum { .. }) => actions.push(ActiveAction::Leave),
                    _ => debug!("ignoring MCS message"),
                }
            }
        }
        for mut event in events {
            match &mut event {
                InputEvent::PointerMove { x, y } | InputEvent::Button { x, y, .. } => self.pointer_at = (*x, *y),
                InputEvent::Wheel { x, y, .. } => (*x, *y) = self.pointer_at,
                _ => {}
            }
            actions.push(ActiveAction::Input(event));
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::geometry::InclusiveRectangle;
    use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags};
    use ironrdp_pdu::input::mouse::PointerFlags;
    use ironrdp_pdu::input::scan_code::{KeyboardFlags as SlowKeyboardFlags, ScanCodePdu};
    use ironrdp_pdu::input::{InputEvent as SlowInputEvent, InputEventPdu, MousePdu};
    use ironrdp_pdu::mcs::{DisconnectReason, SendDataRequest};
    use ironrdp_pdu::rdp::client_info::CompressionType;
    use ironrdp_pdu::rdp::headers::{CompressionFlags, ShareDataHeader, StreamPriority};
    use ironrdp_pdu::rdp::refresh_rectangle::RefreshRectanglePdu;
    use ironrdp_pdu::rdp::suppress_output::SuppressOutputPdu;
    use rdhost_desktop::{MouseButton, Scancode, WheelAxis};

    const CHANNELS: Channels = Channels { io: 1003, user: 1007 };

    fn state() -> ActiveState {
        ActiveState::new(CHANNELS, StaticChannelSet::new())
    }

    fn fast_path(events: Vec<FastPathInputEvent>) -> Vec<u8> {
        encode_vec(&FastPathInput::new(events).unwrap()).unwrap()
    }

    fn mouse(flags: PointerFlags, units: i16, x: u16, y: u16) -> FastPathInputEvent {
        FastPathInputEvent::MouseEvent(MousePdu { flags, number_of_wheel_rotation_units: units, x_position: x, y_position: y })
    }

    /// A slow-path Share Data PDU from the client on `channel_id`.
    fn slow_path(channel_id: u16, pdu: ShareDataPdu) -> Vec<u8> {
        let control = ShareControlHeader {
            share_id: 0x1_03EA,
            pdu_source: CHANNELS.user,
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: pdu,
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
        };
        let user_data = encode_vec(&control).unwrap();
        encode_vec(&X224(SendDataRequest { initiator_id: CHANNELS.user, channel_id, user_data: user_data.into() })).unwrap()
    }

    fn key(code: u8, extended: bool, pressed: bool) -> ActiveAction {
        ActiveAction::Input(InputEvent::Key { scancode: Scancode::new(code, extended), pressed })
    }

    #[test]
    fn fast_path_keys_become_input() {
        let frame = fast_path(vec![
            FastPathInputEvent::KeyboardEvent(KeyboardFlags::empty(), 0x1E),
            FastPathInputEvent::KeyboardEvent(KeyboardFlags::RELEASE, 0x1E),
            FastPathInputEvent::KeyboardEvent(KeyboardFlags::EXTENDED, 0x48),
        ]);
        assert_eq!(state().process(&frame).unwrap(), vec![key(0x1E, false, true), key(0x1E, false, false), key(0x48, true, true)]);
    }

    #[test]
    fn fast_path_mouse_and_wheel_take_the_last_pointer_position() {
        let mut state = state();
        // FreeRDP sends wheel events at 0, 0: they happen where the pointer is.
        let frame = fast_path(vec![
            mouse(PointerFlags::MOVE, 0, 100, 200),
            mouse(PointerFlags::DOWN | PointerFlags::LEFT_BUTTON, 0, 110, 210),
            mouse(PointerFlags::VERTICAL_WHEEL, 120, 0, 0),
        ]);
        assert_eq!(
            state.process(&frame).unwrap(),
            vec![
                ActiveAction::Input(InputEvent::PointerMove { x: 100, y: 200 }),
                ActiveAction::Input(InputEvent::Button { button: MouseButton::Left, pressed: true, x: 110, y: 210 }),
                ActiveAction::Input(InputEvent::Wheel { axis: WheelAxis::Vertical, delta: 120, x: 110, y: 210 }),
            ]
        );
        // The position is remembered across PDUs.
        let frame = fast_path(vec![mouse(PointerFlags::HORIZONTAL_WHEEL, 120, 0, 0)]);
        assert_eq!(
            state.process(&frame).unwrap(),
            vec![ActiveAction::Input(InputEvent::Wheel { axis: WheelAxis::Horizontal, delta: 120, x: 110, y: 210 })]
        );
    }

    #[test]
    fn slow_path_input_becomes_input() {
        let pdu = ShareDataPdu::Input(InputEventPdu(vec![
            SlowInputEvent::ScanCode(ScanCodePdu { flags: SlowKeyboardFlags::empty(), key_code: 0x10 }),
            SlowInputEvent::Mouse(MousePdu { flags: PointerFlags::MOVE, number_of_wheel_rotation_units: 0, x_position: 5, y_position: 6 }),
        ]));
        assert_eq!(
            state().process(&slow_path(CHANNELS.io, pdu)).unwrap(),
            vec![key(0x10, false, true), ActiveAction::Input(InputEvent::PointerMove { x: 5, y: 6 })]
        );
    }

    #[test]
    fn suppress_output_pauses_and_resumes() {
        let hide = slow_path(CHANNELS.io, ShareDataPdu::SuppressOutput(SuppressOutputPdu { desktop_rect: None }));
        assert_eq!(state().process(&hide).unwrap(), vec![ActiveAction::Suppress(true)]);
        let show = slow_path(
            CHANNELS.io,
            ShareDataPdu::SuppressOutput(SuppressOutputPdu {
                desktop_rect: Some(InclusiveRectangle { left: 0, top: 0, right: 639, bottom: 479 }),
            }),
        );
        assert_eq!(state().process(&show).unwrap(), vec![ActiveAction::Suppress(false)]);
    }

    #[test]
    fn refresh_rect_asks_for_the_union_of_its_areas() {
        let pdu = ShareDataPdu::RefreshRectangle(RefreshRectanglePdu {
            areas_to_refresh: vec![
                InclusiveRectangle { left: 10, top: 20, right: 19, bottom: 29 },
                InclusiveRectangle { left: 100, top: 5, right: 109, bottom: 9 },
            ],
        });
        assert_eq!(state().process(&slow_path(CHANNELS.io, pdu)).unwrap(), vec![ActiveAction::Refresh(Rect::new(10, 5, 100, 25))]);
    }

    #[test]
    fn shutdown_request_is_denied() {
        let actions = state().process(&slow_path(CHANNELS.io, ShareDataPdu::ShutdownRequest)).unwrap();
        assert_eq!(actions, vec![ActiveAction::Write(pdus::shutdown_denied(CHANNELS))]);
    }

    #[test]
    fn disconnect_ultimatum_is_leaving() {
        let frame = encode_vec(&X224(DisconnectProviderUltimatum::from_reason(DisconnectReason::UserRequested))).unwrap();
        assert_eq!(state().process(&frame).unwrap(), vec![ActiveAction::Leave]);
    }

    #[test]
    fn data_on_an_unknown_channel_is_ignored() {
        assert_eq!(state().process(&slow_path(1004, ShareDataPdu::ShutdownRequest)).unwrap(), vec![]);
    }

    const ENCOMSP: u16 = 1005;

    /// A state whose client joined encomsp on channel `ENCOMSP`.
    fn sharing_state() -> ActiveState {
        let mut channels = StaticChannelSet::new();
        channels.insert(EncomspChannel::default());
        channels.attach_channel_id(std::any::TypeId::of::<EncomspChannel>(), ENCOMSP);
        ActiveState::new(CHANNELS, channels)
    }

    /// What a client sends for `pdus` on encomsp, one MCS PDU per chunk of at most `chunk` bytes.
    fn encomsp_frames(pdus: &[EncomspPdu], chunk: usize) -> Vec<Vec<u8>> {
        let payload = rdhost_encomsp::encode_all(pdus);
        let bytes = ironrdp_svc::client_encode_svc_messages_with_max_chunk_len(vec![SvcMessage::from(payload)], ENCOMSP, CHANNELS.user, chunk)
            .unwrap();
        // Split the concatenated TPKT frames.
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            frames.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        frames
    }

    fn ctrl_change(bits: u16) -> EncomspPdu {
        EncomspPdu::ParticipantCtrlChange { flags: rdhost_encomsp::ControlChangeFlags(bits), participant_id: 0 }
    }

    #[test]
    fn control_requests_on_encomsp_become_actions() {
        let mut state = sharing_state();
        assert!(state.encomsp_joined());
        // xfreerdp's Ctrl+Alt+C, then its second press; a PDU meant for clients is ignored.
        let frames = encomsp_frames(&[ctrl_change(0x3), EncomspPdu::GraphicsStreamPaused, ctrl_change(0x1)], 1600);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            state.process(&frames[0]).unwrap(),
            vec![
                ActiveAction::ControlRequest(ControlRequest { view: true, interact: true }),
                ActiveAction::ControlRequest(ControlRequest { view: true, interact: false }),
            ]
        );
    }

    #[test]
    fn a_chunked_encomsp_message_is_decided_when_whole() {
        let mut state = sharing_state();
        // 2000 bytes: more than one 1600-byte chunk.
        let pdus: Vec<EncomspPdu> = (0..200).map(|i| ctrl_change(if i % 2 == 0 { 0x1 } else { 0x3 })).collect();
        let frames = encomsp_frames(&pdus, 1600);
        assert_eq!(frames.len(), 2);
        assert_eq!(state.process(&frames[0]).unwrap(), vec![], "nothing before the last chunk");
        let actions = state.process(&frames[1]).unwrap();
        assert_eq!(actions.len(), 200);
        assert_eq!(actions[1], ActiveAction::ControlRequest(ControlRequest { view: true, interact: true }));
    }

    #[test]
    fn malformed_encomsp_ends_the_connection() {
        let mut sharing = sharing_state();
        let payload = vec![0x09, 0x00, 0x0A, 0x00, 0x03]; // Length 10, 5 bytes sent
        let frame = ironrdp_svc::client_encode_svc_messages(vec![SvcMessage::from(payload)], ENCOMSP, CHANNELS.user).unwrap();
        let err = sharing.process(&frame).unwrap_err();
        assert!(err.0.contains("encomsp"), "{err}");
        // Without encomsp joined the same bytes are data on an unknown channel.
        assert_eq!(state().process(&frame).unwrap(), vec![]);
    }

    #[test]
    fn encomsp_messages_go_out_on_the_joined_channel_only() {
        use ironrdp_pdu::mcs::SendDataIndication;
        let pdu = EncomspPdu::GraphicsStreamPaused;
        assert!(state().encomsp_message(&pdu).is_none(), "not joined: nothing to send");
        assert!(!state().encomsp_joined());

        let bytes = sharing_state().encomsp_message(&pdu).unwrap().unwrap();
        let X224(indication) = decode::<X224<SendDataIndication<'_>>>(&bytes).unwrap();
        assert_eq!((indication.channel_id, indication.initiator_id), (ENCOMSP, CHANNELS.user));
        let data = indication.user_data.as_ref();
        // Channel PDU header: total length, then CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST.
        assert_eq!(&data[..8], &[4, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(rdhost_encomsp::decode_all(&data[8..]).unwrap(), vec![pdu]);
    }

    /// A state whose client joined drdynvc on channel `DRDYNVC`, with the graphics pipeline
    /// registered and a client that opens it (as channel 1, display control being 0).
    fn gfx_state() -> ActiveState {
        let mut channels = StaticChannelSet::new();
        channels.insert(DrdynvcServer::new().with_dynamic_channel(GfxChannel::new()));
        channels.attach_channel_id(std::any::TypeId::of::<DrdynvcServer>(), DRDYNVC);
        ActiveState::new(CHANNELS, channels)
    }

    const DRDYNVC: u16 = 1006;

    /// What a client sends on drdynvc: `payload` (a DVC PDU) in one chunk.
    fn drdynvc(payload: Vec<u8>) -> Vec<u8> {
        ironrdp_svc::client_encode_svc_messages(vec![SvcMessage::from(payload)], DRDYNVC, CHANNELS.user).unwrap()
    }

    #[test]
    fn the_graphics_pipeline_is_ready_once_the_client_opened_it_and_advertised() {
        use ironrdp_egfx::pdu::{CapabilitiesAdvertisePdu, CapabilitiesV81Flags, CapabilitySet, GfxPdu};
        let mut state = gfx_state();
        assert_eq!(state.gfx_status(), None, "not open before the client says so");
        assert!(state.gfx_send(|_| Ok(Vec::new())).is_err());
        // DYNVC_CAPS_RSP (version 2): the server asks to create its channels.
        let actions = state.process(&drdynvc(vec![0x50, 0x00, 0x02, 0x00])).unwrap();
        assert!(matches!(actions[..], [ActiveAction::Write(_)]), "create request: {actions:?}");
        assert_eq!(state.gfx_status(), None);
        // DYNVC_CREATE_RSP for channel 0 (the pipeline), status OK: cmd 1 (create), cbId 0.
        let create_response = vec![0x10, 0x00, 0x00, 0x00, 0x00, 0x00];
        state.process(&drdynvc(create_response)).unwrap();
        assert_eq!(state.gfx_status(), Some(GfxStatus::Negotiating));
        // DYNVC_DATA on channel 0: the client's CapabilitiesAdvertise (v8.1 with AVC420).
        let caps = [CapabilitySet::V8_1 { flags: CapabilitiesV81Flags::AVC420_ENABLED }];
        let mut data = vec![0x30, 0x00];
        data.extend(encode_vec(&GfxPdu::CapabilitiesAdvertise(CapabilitiesAdvertisePdu::from_typed(&caps))).unwrap());
        let actions = state.process(&drdynvc(data)).unwrap();
        assert!(matches!(actions[..], [ActiveAction::Write(_)]), "the confirm goes out: {actions:?}");
        assert_eq!(state.gfx_status(), Some(GfxStatus::Ready { avc420: true, generation: 1 }));
        assert!(state.gfx_frames().is_some_and(InFlight::can_send));
        let bytes = state.gfx_send(|gfx| gfx.reset_surface(rdhost_desktop::Size::new(640, 480))).unwrap();
        assert!(!bytes.is_empty());
        // DYNVC_CLOSE of channel 0: gone, and the terminal falls back.
        state.process(&drdynvc(vec![0x40, 0x00])).unwrap();
        assert_eq!(state.gfx_status(), None);
    }

    #[test]
    fn garbage_is_malformed() {
        let mut state = state();
        assert!(state.process(&[]).is_err());
        // A TPKT header announcing more than there is.
        assert!(state.process(&[0x03, 0x00, 0x00, 0x20, 0x02, 0xF0]).is_err());
        // A fast-path header with an event count and no events.
        assert!(state.process(&[0x04, 0x02]).is_err());
        // An X.224 data TPDU whose MCS payload is not one.
        assert!(state.process(&[0x03, 0x00, 0x00, 0x09, 0x02, 0xF0, 0x80, 0xFF, 0xFF]).is_err());
    }
}
