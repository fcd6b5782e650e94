//! The attendee's end of the `encomsp` static virtual channel (MS-RDPEMC): what the sharer says
//! about participants and pauses, and the control requests we send.

use ironrdp_core::impl_as_any;
use ironrdp_pdu::PduResult;
use ironrdp_pdu::gcc::ChannelName;
use ironrdp_svc::{SvcClientProcessor, SvcMessage, SvcProcessor};
use rdhost_encomsp::{EncomspPdu, decode_all};
use tracing::warn;

/// What the sharer last told us about ourselves (OD_PARTICIPANT_CREATED with IS_PARTICIPANT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantState {
    pub participant_id: u32,
    pub may_view: bool,
    pub may_interact: bool,
}

/// How many encomsp PDUs of each kind went by; for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncomspCounters {
    /// OD_PARTICIPANT_CREATED received (about us or anyone else).
    pub participant_created: u64,
    pub participant_removed: u64,
    pub graphics_paused: u64,
    pub graphics_resumed: u64,
    /// PDUs of other types received (application filter, or unknown).
    pub other: u64,
    /// Channel messages that did not decode; they are dropped whole.
    pub malformed: u64,
    /// OD_PARTICIPANT_CTRL_CHANGE sent.
    pub control_requests_sent: u64,
}

/// The channel processor: decoded PDUs wait here until the client takes them after each PDU.
#[derive(Debug, Default)]
pub(crate) struct EncomspClient {
    received: Vec<EncomspPdu>,
    malformed: u64,
}

impl EncomspClient {
    pub const NAME: ChannelName = ChannelName::from_static(b"encomsp\0");

    /// The PDUs received since the last call, and how many messages were dropped meanwhile.
    pub fn take(&mut self) -> (Vec<EncomspPdu>, u64) {
        (
            std::mem::take(&mut self.received),
            std::mem::take(&mut self.malformed),
        )
    }
}

impl_as_any!(EncomspClient);

impl SvcProcessor for EncomspClient {
    fn channel_name(&self) -> ChannelName {
        Self::NAME
    }

    fn process(&mut self, payload: &[u8]) -> PduResult<Vec<SvcMessage>> {
        // A viewer keeps going on a garbled notice: the session itself is still fine.
        match decode_all(payload) {
            Ok(pdus) => self.received.extend(pdus),
            Err(e) => {
                warn!(error = %e, "encomsp message from the server dropped");
                self.malformed += 1;
            }
        }
        Ok(Vec::new())
    }
}

impl SvcClientProcessor for EncomspClient {}

/// The encomsp state a client keeps: the newest word about itself, the pause, the counters.
#[derive(Debug, Default)]
pub(crate) struct EncomspState {
    pub participant: Option<ParticipantState>,
    pub graphics_paused: bool,
    pub counters: EncomspCounters,
}

impl EncomspState {
    pub fn apply(&mut self, pdu: EncomspPdu) {
        match pdu {
            EncomspPdu::ParticipantCreated {
                participant_id,
                flags,
                ..
            } => {
                self.counters.participant_created += 1;
                if flags.is_participant() {
                    self.participant = Some(ParticipantState {
                        participant_id,
                        may_view: flags.may_view(),
                        may_interact: flags.may_interact(),
                    });
                }
            }
            EncomspPdu::ParticipantRemoved { participant_id, .. } => {
                self.counters.participant_removed += 1;
                if self
                    .participant
                    .is_some_and(|p| p.participant_id == participant_id)
                {
                    self.participant = None;
                }
            }
            EncomspPdu::GraphicsStreamPaused => {
                self.counters.graphics_paused += 1;
                self.graphics_paused = true;
            }
            EncomspPdu::GraphicsStreamResumed => {
                self.counters.graphics_resumed += 1;
                self.graphics_paused = false;
            }
            // A control request is for the sharer; from it, it means nothing to us.
            EncomspPdu::ParticipantCtrlChange { .. } | EncomspPdu::Other { .. } => {
                self.counters.other += 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdhost_encomsp::ParticipantFlags;

    fn created(id: u32, flags: u16) -> EncomspPdu {
        EncomspPdu::ParticipantCreated {
            participant_id: id,
            group_id: 0,
            flags: ParticipantFlags(flags),
            friendly_name: "x".into(),
        }
    }

    #[test]
    fn only_pdus_about_us_set_our_level_and_the_newest_wins() {
        let mut state = EncomspState::default();
        state.apply(created(5, 0x3)); // another attendee, interactive
        assert_eq!(state.participant, None);
        state.apply(created(9, 0x5));
        assert_eq!(
            state.participant,
            Some(ParticipantState {
                participant_id: 9,
                may_view: true,
                may_interact: false
            })
        );
        state.apply(created(9, 0x7));
        assert_eq!(
            state.participant,
            Some(ParticipantState {
                participant_id: 9,
                may_view: true,
                may_interact: true
            })
        );
        state.apply(EncomspPdu::ParticipantRemoved {
            participant_id: 5,
            disc_type: 2,
            disc_code: 0,
        });
        assert!(state.participant.is_some(), "someone else left");
        state.apply(EncomspPdu::ParticipantRemoved {
            participant_id: 9,
            disc_type: 0,
            disc_code: 0,
        });
        assert_eq!(state.participant, None);
        assert_eq!(
            (
                state.counters.participant_created,
                state.counters.participant_removed
            ),
            (3, 2)
        );
    }

    #[test]
    fn pause_follows_the_newest_notice() {
        let mut state = EncomspState::default();
        state.apply(EncomspPdu::GraphicsStreamPaused);
        assert!(state.graphics_paused);
        state.apply(EncomspPdu::GraphicsStreamResumed);
        assert!(!state.graphics_paused);
        assert_eq!(
            (
                state.counters.graphics_paused,
                state.counters.graphics_resumed
            ),
            (1, 1)
        );
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut channel = EncomspClient::default();
        assert!(channel.process(&[0x0A, 0x00, 0x09]).unwrap().is_empty());
        channel
            .process(&EncomspPdu::GraphicsStreamPaused.encode())
            .unwrap();
        assert_eq!(channel.take(), (vec![EncomspPdu::GraphicsStreamPaused], 1));
        assert_eq!(channel.take(), (vec![], 0));
    }
}
