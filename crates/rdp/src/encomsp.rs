//! The sharer's end of the `encomsp` static virtual channel (MS-RDPEMC): attendees ask for a
//! control level on it, and are told their level and about pauses.
//!
//! The channel processor only decodes; what a PDU means is decided in `state.rs`, which takes
//! the decoded PDUs from the processor after every message.

use ironrdp_core::impl_as_any;
use ironrdp_pdu::PduResult;
use ironrdp_pdu::gcc::ChannelName;
use ironrdp_svc::{SvcMessage, SvcProcessor, SvcServerProcessor};
use rdhost_encomsp::{ControlChangeFlags, EncomspError, EncomspPdu, ParticipantFlags, decode_all};

/// An attendee's request for a control level (OD_PARTICIPANT_CTRL_CHANGE). The connection it
/// came on says who asks: clients send participant id 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRequest {
    /// See the screen.
    pub view: bool,
    /// Drive the keyboard and mouse (implies `view`).
    pub interact: bool,
}

impl ControlRequest {
    pub(crate) fn from_flags(flags: ControlChangeFlags) -> Self {
        // Interacting with a desktop one cannot see is no level: REQUEST_INTERACT alone means
        // CTRL_LEVEL_INTERACTIVE, as it does for Windows.
        let interact = flags.request_interact();
        Self { view: interact || flags.request_view(), interact }
    }
}

/// What an attendee is told about a participant (OD_PARTICIPANT_CREATED): sent when it joins
/// and whenever its control level changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub participant_id: u32,
    pub group_id: u32,
    pub may_view: bool,
    pub may_interact: bool,
    /// This PDU describes the attendee it is sent to.
    pub is_participant: bool,
    /// Shown by the attendee's client; cut at 1024 UTF-16 units.
    pub name: String,
}

impl Participant {
    pub(crate) fn to_pdu(&self) -> EncomspPdu {
        let mut flags = ParticipantFlags::empty();
        for (on, flag) in [
            (self.may_view, ParticipantFlags::MAY_VIEW),
            (self.may_interact, ParticipantFlags::MAY_INTERACT),
            (self.is_participant, ParticipantFlags::IS_PARTICIPANT),
        ] {
            if on {
                flags = flags | flag;
            }
        }
        EncomspPdu::ParticipantCreated {
            participant_id: self.participant_id,
            group_id: self.group_id,
            flags,
            friendly_name: self.name.clone(),
        }
    }
}

/// The channel processor. IronRDP reassembles the channel's chunks and hands each whole
/// message here; the decoded PDUs (or why the message was not one) wait for `ActiveState`.
#[derive(Debug, Default)]
pub(crate) struct EncomspChannel {
    received: Vec<EncomspPdu>,
    fault: Option<EncomspError>,
}

impl EncomspChannel {
    pub const NAME: ChannelName = ChannelName::from_static(b"encomsp\0");

    /// The PDUs received since the last call, or the first reason a message was malformed.
    pub fn take(&mut self) -> Result<Vec<EncomspPdu>, EncomspError> {
        if let Some(fault) = self.fault.take() {
            self.received.clear();
            return Err(fault);
        }
        Ok(std::mem::take(&mut self.received))
    }
}

impl_as_any!(EncomspChannel);

impl SvcProcessor for EncomspChannel {
    fn channel_name(&self) -> ChannelName {
        Self::NAME
    }

    fn process(&mut self, payload: &[u8]) -> PduResult<Vec<SvcMessage>> {
        // Kept rather than returned: an IronRDP error would lose which PDU and why.
        match decode_all(payload) {
            Ok(pdus) => self.received.extend(pdus),
            Err(e) => {
                self.fault.get_or_insert(e);
            }
        }
        Ok(Vec::new())
    }
}

impl SvcServerProcessor for EncomspChannel {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_levels() {
        let level = |bits| ControlRequest::from_flags(ControlChangeFlags(bits));
        assert_eq!(level(0x3), ControlRequest { view: true, interact: true });
        assert_eq!(level(0x1), ControlRequest { view: true, interact: false });
        assert_eq!(level(0x2), ControlRequest { view: true, interact: true }, "interact implies view");
        assert_eq!(level(0x0), ControlRequest { view: false, interact: false });
        assert_eq!(level(0x8), ControlRequest { view: false, interact: false });
    }

    #[test]
    fn participants_become_participant_created() {
        let p = Participant {
            participant_id: 4,
            group_id: 1,
            may_view: true,
            may_interact: false,
            is_participant: true,
            name: "Ann".into(),
        };
        assert_eq!(
            p.to_pdu(),
            EncomspPdu::ParticipantCreated {
                participant_id: 4,
                group_id: 1,
                flags: ParticipantFlags(0x5),
                friendly_name: "Ann".into()
            }
        );
    }

    #[test]
    fn a_malformed_message_is_reported_once() {
        let mut channel = EncomspChannel::default();
        channel.process(&[0x0A, 0, 4, 0]).unwrap();
        channel.process(&[0x0A, 0, 9]).unwrap();
        assert!(channel.take().is_err());
        assert_eq!(channel.take(), Ok(vec![]));
    }
}
