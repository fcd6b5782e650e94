//! MS-RDPEMC, the Multiparty Virtual Channel: the PDUs that travel on the `encomsp` static
//! virtual channel between a desktop-sharing sharer (RDP server) and its attendees (RDP clients).
//!
//! Pure codec, no I/O. Every PDU starts with `{u16 Type, u16 Length}` (little-endian, `Length`
//! counting the header), and one channel message may carry several PDUs back to back, so
//! [`decode_all`] returns a list. The PDUs desktop sharing uses are modelled (participants,
//! control requests, pause/resume); the application and window PDUs of the application filter
//! are kept as [`EncomspPdu::Other`] with their body, so nothing a peer sends is lost.
//!
//! Decoding follows what deployed peers accept: a PDU's `Length` may exceed its fields (the
//! excess is skipped), never fall short of them; strings hold at most 1024 UTF-16 units.

use std::fmt;

/// The static virtual channel's name.
pub const CHANNEL_NAME: &str = "encomsp";

/// The longest string a PDU may carry, in UTF-16 code units (MS-RDPEMC 2.2.1.2).
pub const MAX_STRING_UNITS: usize = 1024;

/// The common header: Type and Length, two bytes each.
pub const HEADER_SIZE: usize = 4;

/// The `Type` field of the header (ODTYPE_*).
pub mod pdu_type {
    pub const FILTER_STATE_UPDATED: u16 = 0x01;
    pub const APP_REMOVED: u16 = 0x02;
    pub const APP_CREATED: u16 = 0x03;
    pub const WND_REMOVED: u16 = 0x04;
    pub const WND_CREATED: u16 = 0x05;
    pub const WND_SHOW: u16 = 0x06;
    pub const PARTICIPANT_REMOVED: u16 = 0x07;
    pub const PARTICIPANT_CREATED: u16 = 0x08;
    pub const PARTICIPANT_CTRL_CHANGE: u16 = 0x09;
    pub const GRAPHICS_STREAM_PAUSED: u16 = 0x0A;
    pub const GRAPHICS_STREAM_RESUMED: u16 = 0x0B;
}

/// OD_PARTICIPANT_CREATED flags: what a participant may do, and whether the PDU describes the
/// participant receiving it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ParticipantFlags(pub u16);

impl ParticipantFlags {
    pub const MAY_VIEW: Self = Self(0x0001);
    pub const MAY_INTERACT: Self = Self(0x0002);
    /// "This PDU describes you": set only in the PDU sent to the participant it is about.
    pub const IS_PARTICIPANT: Self = Self(0x0004);

    pub const fn empty() -> Self {
        Self(0)
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn may_view(self) -> bool {
        self.contains(Self::MAY_VIEW)
    }

    pub const fn may_interact(self) -> bool {
        self.contains(Self::MAY_INTERACT)
    }

    pub const fn is_participant(self) -> bool {
        self.contains(Self::IS_PARTICIPANT)
    }
}

impl std::ops::BitOr for ParticipantFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for ParticipantFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flags(
            f,
            "ParticipantFlags",
            self.0,
            &[
                (Self::MAY_VIEW.0, "MAY_VIEW"),
                (Self::MAY_INTERACT.0, "MAY_INTERACT"),
                (Self::IS_PARTICIPANT.0, "IS_PARTICIPANT"),
            ],
        )
    }
}

/// OD_PARTICIPANT_CTRL_CHANGE flags: the level a participant asks for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ControlChangeFlags(pub u16);

impl ControlChangeFlags {
    pub const REQUEST_VIEW: Self = Self(0x0001);
    pub const REQUEST_INTERACT: Self = Self(0x0002);
    pub const ALLOW_CONTROL_REQUESTS: Self = Self(0x0008);

    pub const fn empty() -> Self {
        Self(0)
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn request_view(self) -> bool {
        self.contains(Self::REQUEST_VIEW)
    }

    pub const fn request_interact(self) -> bool {
        self.contains(Self::REQUEST_INTERACT)
    }
}

impl std::ops::BitOr for ControlChangeFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for ControlChangeFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flags(
            f,
            "ControlChangeFlags",
            self.0,
            &[
                (Self::REQUEST_VIEW.0, "REQUEST_VIEW"),
                (Self::REQUEST_INTERACT.0, "REQUEST_INTERACT"),
                (Self::ALLOW_CONTROL_REQUESTS.0, "ALLOW_CONTROL_REQUESTS"),
            ],
        )
    }
}

fn write_flags(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    bits: u16,
    known: &[(u16, &str)],
) -> fmt::Result {
    write!(f, "{name}(")?;
    let mut rest = bits;
    let mut first = true;
    for &(bit, label) in known {
        if bits & bit != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            f.write_str(label)?;
            first = false;
            rest &= !bit;
        }
    }
    if rest != 0 || first {
        if !first {
            f.write_str(" | ")?;
        }
        write!(f, "{rest:#x}")?;
    }
    f.write_str(")")
}

/// One MS-RDPEMC PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncomspPdu {
    /// OD_PARTICIPANT_CREATED (sharer → participants): a participant joined, or its control
    /// level changed.
    ParticipantCreated {
        participant_id: u32,
        group_id: u32,
        flags: ParticipantFlags,
        friendly_name: String,
    },
    /// OD_PARTICIPANT_REMOVED (sharer → participants). `disc_type`: 0 the sharer ended it,
    /// 1 an error, 2 the participant left.
    ParticipantRemoved {
        participant_id: u32,
        disc_type: u32,
        disc_code: u32,
    },
    /// OD_PARTICIPANT_CTRL_CHANGE (participant → sharer): a request for a control level.
    /// Clients send `participant_id` 0; the connection it arrives on says who asks.
    ParticipantCtrlChange {
        flags: ControlChangeFlags,
        participant_id: u32,
    },
    /// OD_GRAPHICS_STREAM_PAUSED (sharer → participants).
    GraphicsStreamPaused,
    /// OD_GRAPHICS_STREAM_RESUMED (sharer → participants).
    GraphicsStreamResumed,
    /// Any other type (the application filter's PDUs, or one we do not know), body as sent.
    Other { pdu_type: u16, body: Vec<u8> },
}

impl EncomspPdu {
    /// The header's Type.
    pub fn pdu_type(&self) -> u16 {
        match self {
            Self::ParticipantCreated { .. } => pdu_type::PARTICIPANT_CREATED,
            Self::ParticipantRemoved { .. } => pdu_type::PARTICIPANT_REMOVED,
            Self::ParticipantCtrlChange { .. } => pdu_type::PARTICIPANT_CTRL_CHANGE,
            Self::GraphicsStreamPaused => pdu_type::GRAPHICS_STREAM_PAUSED,
            Self::GraphicsStreamResumed => pdu_type::GRAPHICS_STREAM_RESUMED,
            Self::Other { pdu_type, .. } => *pdu_type,
        }
    }

    /// The PDU on the wire, header included.
    ///
    /// A friendly name longer than [`MAX_STRING_UNITS`] UTF-16 units is cut there (at a
    /// character boundary), and an `Other` body is cut where the 16-bit Length ends: what
    /// [`decode_all`] returns always encodes whole.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Self::ParticipantCreated {
                participant_id,
                group_id,
                flags,
                friendly_name,
            } => {
                body.extend_from_slice(&participant_id.to_le_bytes());
                body.extend_from_slice(&group_id.to_le_bytes());
                body.extend_from_slice(&flags.0.to_le_bytes());
                put_string(&mut body, friendly_name);
            }
            Self::ParticipantRemoved {
                participant_id,
                disc_type,
                disc_code,
            } => {
                body.extend_from_slice(&participant_id.to_le_bytes());
                body.extend_from_slice(&disc_type.to_le_bytes());
                body.extend_from_slice(&disc_code.to_le_bytes());
            }
            Self::ParticipantCtrlChange {
                flags,
                participant_id,
            } => {
                body.extend_from_slice(&flags.0.to_le_bytes());
                body.extend_from_slice(&participant_id.to_le_bytes());
            }
            Self::GraphicsStreamPaused | Self::GraphicsStreamResumed => {}
            Self::Other { body: other, .. } => {
                body.extend_from_slice(
                    &other[..other.len().min(usize::from(u16::MAX) - HEADER_SIZE)],
                );
            }
        }
        let length = u16::try_from(HEADER_SIZE + body.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
        out.extend_from_slice(&self.pdu_type().to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Several PDUs as one channel message.
pub fn encode_all(pdus: &[EncomspPdu]) -> Vec<u8> {
    pdus.iter().flat_map(EncomspPdu::encode).collect()
}

/// Why a channel message is not a sequence of MS-RDPEMC PDUs. Offsets count from the start of
/// the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncomspError {
    #[error("encomsp: {available} bytes left at offset {offset}, too few for a PDU header")]
    TruncatedHeader { offset: usize, available: usize },
    #[error(
        "encomsp: PDU type {pdu_type} at offset {offset} gives length {length}, but {available} bytes are left (a PDU is at least 4)"
    )]
    BadLength {
        offset: usize,
        pdu_type: u16,
        length: u16,
        available: usize,
    },
    #[error(
        "encomsp: PDU type {pdu_type} at offset {offset} is {length} bytes long, too short for its fields"
    )]
    ShortPdu {
        offset: usize,
        pdu_type: u16,
        length: u16,
    },
    #[error(
        "encomsp: PDU type {pdu_type} at offset {offset} holds a string of {units} UTF-16 units (at most 1024)"
    )]
    StringTooLong {
        offset: usize,
        pdu_type: u16,
        units: u16,
    },
}

/// Decode every PDU in one channel message, in order. An empty message holds none.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<EncomspPdu>, EncomspError> {
    let mut pdus = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < HEADER_SIZE {
            return Err(EncomspError::TruncatedHeader {
                offset,
                available: rest.len(),
            });
        }
        let pdu_type = u16::from_le_bytes([rest[0], rest[1]]);
        let length = u16::from_le_bytes([rest[2], rest[3]]);
        if usize::from(length) < HEADER_SIZE || usize::from(length) > rest.len() {
            return Err(EncomspError::BadLength {
                offset,
                pdu_type,
                length,
                available: rest.len(),
            });
        }
        let body = &rest[HEADER_SIZE..usize::from(length)];
        pdus.push(decode_body(pdu_type, body).map_err(|fault| match fault {
            Fault::Short => EncomspError::ShortPdu {
                offset,
                pdu_type,
                length,
            },
            Fault::StringTooLong(units) => EncomspError::StringTooLong {
                offset,
                pdu_type,
                units,
            },
        })?);
        offset += usize::from(length);
    }
    Ok(pdus)
}

enum Fault {
    Short,
    StringTooLong(u16),
}

/// Reads fields front to back; running out is [`Fault::Short`].
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Fault> {
        if self.0.len() < n {
            return Err(Fault::Short);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, Fault> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Fault> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// UNICODE_STRING: `{u16 cchString; WCHAR wString[cchString]}`.
    fn string(&mut self) -> Result<String, Fault> {
        let units = self.u16()?;
        if usize::from(units) > MAX_STRING_UNITS {
            return Err(Fault::StringTooLong(units));
        }
        let raw = self.take(usize::from(units) * 2)?;
        let utf16: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        // The string is counted, not terminated; a peer that counts a terminator anyway
        // should not leave NULs in a name shown to people.
        Ok(String::from_utf16_lossy(&utf16)
            .trim_end_matches('\0')
            .to_owned())
    }
}

fn decode_body(pdu_type: u16, body: &[u8]) -> Result<EncomspPdu, Fault> {
    let mut r = Reader(body);
    // Bytes past the fields (within Length) are skipped, as deployed peers do.
    Ok(match pdu_type {
        pdu_type::PARTICIPANT_CREATED => EncomspPdu::ParticipantCreated {
            participant_id: r.u32()?,
            group_id: r.u32()?,
            flags: ParticipantFlags(r.u16()?),
            friendly_name: r.string()?,
        },
        pdu_type::PARTICIPANT_REMOVED => EncomspPdu::ParticipantRemoved {
            participant_id: r.u32()?,
            disc_type: r.u32()?,
            disc_code: r.u32()?,
        },
        pdu_type::PARTICIPANT_CTRL_CHANGE => EncomspPdu::ParticipantCtrlChange {
            flags: ControlChangeFlags(r.u16()?),
            participant_id: r.u32()?,
        },
        pdu_type::GRAPHICS_STREAM_PAUSED => EncomspPdu::GraphicsStreamPaused,
        pdu_type::GRAPHICS_STREAM_RESUMED => EncomspPdu::GraphicsStreamResumed,
        other => EncomspPdu::Other {
            pdu_type: other,
            body: body.to_vec(),
        },
    })
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    let mut units: Vec<u16> = Vec::new();
    for ch in text.chars() {
        let mut buf = [0u16; 2];
        let encoded = ch.encode_utf16(&mut buf);
        if units.len() + encoded.len() > MAX_STRING_UNITS {
            break;
        }
        units.extend_from_slice(encoded);
    }
    // At most 1024 units: the count fits.
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for unit in units {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, flags: ParticipantFlags) -> EncomspPdu {
        EncomspPdu::ParticipantCreated {
            participant_id: 0x0102_0304,
            group_id: 7,
            flags,
            friendly_name: name.into(),
        }
    }

    #[test]
    fn control_change_is_laid_out_as_freerdp_sends_it() {
        // Ctrl+Alt+C in xfreerdp: Type 9, Length 10, Flags REQUEST_VIEW|REQUEST_INTERACT, Id 0.
        let pdu = EncomspPdu::ParticipantCtrlChange {
            flags: ControlChangeFlags::REQUEST_VIEW | ControlChangeFlags::REQUEST_INTERACT,
            participant_id: 0,
        };
        let wire = [0x09, 0x00, 0x0A, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(pdu.encode(), wire);
        assert_eq!(decode_all(&wire).unwrap(), vec![pdu]);
    }

    #[test]
    fn participant_created_field_order() {
        let pdu = created(
            "Al",
            ParticipantFlags::MAY_VIEW | ParticipantFlags::IS_PARTICIPANT,
        );
        let wire = pdu.encode();
        #[rustfmt::skip]
        let expected = [
            0x08, 0x00, 0x14, 0x00,             // Type 8, Length 20 (the header counts)
            0x04, 0x03, 0x02, 0x01,             // ParticipantId
            0x07, 0x00, 0x00, 0x00,             // GroupId
            0x05, 0x00,                         // Flags MAY_VIEW | IS_PARTICIPANT
            0x02, 0x00, b'A', 0x00, b'l', 0x00, // FriendlyName: cch 2, "Al", no terminator
        ];
        assert_eq!(wire, expected);
        assert_eq!(decode_all(&wire).unwrap(), vec![pdu]);
    }

    #[test]
    fn every_modelled_pdu_round_trips_and_several_share_a_message() {
        let pdus = vec![
            created(
                "Zoë 👀",
                ParticipantFlags::MAY_VIEW | ParticipantFlags::MAY_INTERACT,
            ),
            EncomspPdu::ParticipantRemoved {
                participant_id: 9,
                disc_type: 2,
                disc_code: 0xDEAD_BEEF,
            },
            EncomspPdu::ParticipantCtrlChange {
                flags: ControlChangeFlags::REQUEST_VIEW,
                participant_id: 3,
            },
            EncomspPdu::GraphicsStreamPaused,
            EncomspPdu::GraphicsStreamResumed,
            EncomspPdu::Other {
                pdu_type: pdu_type::FILTER_STATE_UPDATED,
                body: vec![1],
            },
            EncomspPdu::Other {
                pdu_type: 0x77,
                body: vec![],
            },
        ];
        let message = encode_all(&pdus);
        assert_eq!(decode_all(&message).unwrap(), pdus);
        assert_eq!(EncomspPdu::GraphicsStreamPaused.encode(), [0x0A, 0, 4, 0]);
        assert_eq!(EncomspPdu::GraphicsStreamResumed.encode(), [0x0B, 0, 4, 0]);
        assert_eq!(decode_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn a_length_past_the_fields_is_skipped_one_short_of_them_is_an_error() {
        // A pause PDU with two bytes of padding, then a resume.
        let padded = [0x0A, 0, 6, 0, 0xEE, 0xEE, 0x0B, 0, 4, 0];
        assert_eq!(
            decode_all(&padded).unwrap(),
            vec![
                EncomspPdu::GraphicsStreamPaused,
                EncomspPdu::GraphicsStreamResumed
            ]
        );
        // A control change whose Length leaves out the participant id.
        let short = [0x09, 0, 6, 0, 3, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_all(&short),
            Err(EncomspError::ShortPdu {
                offset: 0,
                pdu_type: 9,
                length: 6
            })
        );
    }

    #[test]
    fn framing_errors_say_where() {
        assert_eq!(
            decode_all(&[0x0A, 0, 4]),
            Err(EncomspError::TruncatedHeader {
                offset: 0,
                available: 3
            })
        );
        assert_eq!(
            decode_all(&[0x0A, 0, 4, 0, 0x0B, 0]),
            Err(EncomspError::TruncatedHeader {
                offset: 4,
                available: 2
            })
        );
        assert_eq!(
            decode_all(&[0x0A, 0, 3, 0]),
            Err(EncomspError::BadLength {
                offset: 0,
                pdu_type: 10,
                length: 3,
                available: 4
            })
        );
        assert_eq!(
            decode_all(&[0x0A, 0, 9, 0, 0]),
            Err(EncomspError::BadLength {
                offset: 0,
                pdu_type: 10,
                length: 9,
                available: 5
            })
        );
        // A zero length would loop forever if it were taken as "no body".
        assert!(matches!(
            decode_all(&[0x0A, 0, 0, 0]),
            Err(EncomspError::BadLength { length: 0, .. })
        ));
    }

    #[test]
    fn strings_are_bounded() {
        let mut body = Vec::new();
        body.extend_from_slice(&[0; 10]);
        body.extend_from_slice(&1025u16.to_le_bytes());
        body.extend_from_slice(&vec![0x41; 2050]);
        let mut wire = vec![0x08, 0];
        wire.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
        wire.extend_from_slice(&body);
        assert_eq!(
            decode_all(&wire),
            Err(EncomspError::StringTooLong {
                offset: 0,
                pdu_type: 8,
                units: 1025
            })
        );

        // A string running past its PDU's Length is short, even if more bytes follow.
        let mut wire = created("abc", ParticipantFlags::MAY_VIEW).encode();
        wire[2] -= 2;
        assert_eq!(
            decode_all(&wire),
            Err(EncomspError::ShortPdu {
                offset: 0,
                pdu_type: 8,
                length: 20
            })
        );

        // Encoding cuts a long name at 1024 units without splitting a surrogate pair.
        let long = format!("{}{}", "x".repeat(1023), "😀");
        let EncomspPdu::ParticipantCreated { friendly_name, .. } =
            decode_all(&created(&long, ParticipantFlags::MAY_VIEW).encode())
                .unwrap()
                .remove(0)
        else {
            panic!("not a participant");
        };
        assert_eq!(friendly_name, "x".repeat(1023));
    }

    #[test]
    fn trailing_nuls_and_bad_utf16_do_not_leak_into_names() {
        let mut wire = vec![0x08, 0, 0, 0];
        wire.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 1, 0]);
        wire.extend_from_slice(&3u16.to_le_bytes());
        wire.extend_from_slice(&[b'A', 0, 0x00, 0xD8, 0, 0]); // "A", a lone surrogate, NUL
        let len = wire.len() as u16;
        wire[2..4].copy_from_slice(&len.to_le_bytes());
        let decoded = decode_all(&wire).unwrap();
        assert_eq!(
            decoded,
            vec![EncomspPdu::ParticipantCreated {
                participant_id: 1,
                group_id: 2,
                flags: ParticipantFlags::MAY_VIEW,
                friendly_name: "A\u{FFFD}".into()
            }]
        );
    }

    #[test]
    fn flags_read_as_their_names() {
        let flags = ParticipantFlags(0x0007);
        assert!(flags.may_view() && flags.may_interact() && flags.is_participant());
        assert!(!ParticipantFlags::MAY_VIEW.may_interact());
        assert_eq!(
            format!("{:?}", ParticipantFlags(0x0005)),
            "ParticipantFlags(MAY_VIEW | IS_PARTICIPANT)"
        );
        assert_eq!(
            format!("{:?}", ControlChangeFlags(0x0011)),
            "ControlChangeFlags(REQUEST_VIEW | 0x10)"
        );
        assert_eq!(
            format!("{:?}", ControlChangeFlags::empty()),
            "ControlChangeFlags(0x0)"
        );
        let asked = ControlChangeFlags(0x0003);
        assert!(asked.request_view() && asked.request_interact());
    }

    /// xorshift64*: deterministic, no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Whatever decodes re-encodes to something that decodes to the same PDUs.
    fn check(bytes: &[u8]) {
        if let Ok(pdus) = decode_all(bytes) {
            let again = encode_all(&pdus);
            assert_eq!(decode_all(&again).as_ref(), Ok(&pdus), "input {bytes:02x?}");
        }
    }

    #[test]
    fn random_and_mutated_messages_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check(&bytes);
        }
        let valid = encode_all(&[
            created(
                "viewer",
                ParticipantFlags::MAY_VIEW | ParticipantFlags::IS_PARTICIPANT,
            ),
            EncomspPdu::ParticipantCtrlChange {
                flags: ControlChangeFlags::REQUEST_VIEW,
                participant_id: 0,
            },
            EncomspPdu::ParticipantRemoved {
                participant_id: 1,
                disc_type: 0,
                disc_code: 0,
            },
            EncomspPdu::GraphicsStreamPaused,
        ]);
        let mut decoded_some = 0;
        for _ in 0..50_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 => {
                        let i = rng.below(bytes.len());
                        bytes[i] = rng.next() as u8;
                    }
                    1 => {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                    2 => bytes.truncate(rng.below(bytes.len() + 1)),
                    _ => {
                        let i = rng.below(bytes.len() + 1);
                        bytes.insert(i, rng.next() as u8);
                    }
                }
                if bytes.is_empty() {
                    bytes.push(0);
                }
            }
            if decode_all(&bytes).is_ok() {
                decoded_some += 1;
            }
            check(&bytes);
        }
        // The mutations must exercise both paths, or the test proves little.
        assert!(
            decoded_some > 1_000 && decoded_some < 49_000,
            "{decoded_some} of 50000 decoded"
        );
    }
}
