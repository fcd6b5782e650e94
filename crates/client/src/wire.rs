//! Small pieces of the wire the IronRDP client crates do not hand us: the pre-connection PDU,
//! the numeric Set Error Info code (IronRDP turns it into a string, and refuses codes it does not
//! know), which codec each graphics update used, and a byte counter under TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use ironrdp_pdu::pcb::{PcbVersion, PreconnectionBlob};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The MS-RDPEPS RDP_PRECONNECTION_PDU_V1 that asks for session `id` (what `xfreerdp /pcid:ID`
/// writes before the X.224 Connection Request).
pub fn preconnection_pdu(id: u32) -> Vec<u8> {
    let pcb = PreconnectionBlob {
        version: PcbVersion::V1,
        id,
        v2_payload: None,
    };
    ironrdp_core::encode_vec(&pcb).expect("a v1 pre-connection PDU always encodes")
}

const PDUTYPE_DATAPDU: u16 = 0x7;
const PDUTYPE2_SET_ERROR_INFO_PDU: u8 = 0x2F;
const PACKET_COMPRESSED: u8 = 0x20;

/// Finds a Set Error Info PDU in a slow-path (X.224) frame and returns its code.
///
/// `io_channel` restricts the search to the I/O channel once it is known; before that (during
/// the connection sequence) any channel is searched, which is safe because static channel data
/// does not flow yet. A frame may carry several concatenated Share Control PDUs.
pub fn set_error_info(frame: &[u8], io_channel: Option<u16>) -> Option<u32> {
    let ctx = ironrdp_pdu::mcs::decode_send_data_indication(frame).ok()?;
    if io_channel.is_some_and(|id| id != ctx.channel_id) {
        return None;
    }
    let mut data = ctx.user_data;
    let mut found = None;
    while data.len() >= 6 {
        let total = usize::from(u16::from_le_bytes([data[0], data[1]]));
        if total < 6 || total > data.len() {
            break;
        }
        let pdu = &data[..total];
        let pdu_type = u16::from_le_bytes([pdu[2], pdu[3]]);
        // Share Control header (6) + Share Data header (12) + errorInfo (4).
        if pdu_type & 0xF == PDUTYPE_DATAPDU && pdu.len() >= 22 {
            let pdu_type2 = pdu[14];
            let compressed = pdu[15] & PACKET_COMPRESSED != 0;
            if pdu_type2 == PDUTYPE2_SET_ERROR_INFO_PDU && !compressed {
                found = Some(u32::from_le_bytes([pdu[18], pdu[19], pdu[20], pdu[21]]));
            }
        }
        data = &data[total..];
    }
    found
}

/// How a graphics update was encoded, as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Codec {
    /// Surface bits with the RemoteFX codec.
    RemoteFx,
    /// Surface bits with `CODEC_ID_NONE` (uncompressed).
    SurfaceUncompressed,
    /// Surface bits with a codec id we did not advertise (the session cannot decode it).
    SurfaceOther(u8),
    /// Bitmap update, RDP 6.0 bitmap compression (planar, 32 bpp).
    Planar,
    /// Bitmap update, interleaved RLE (8 to 24 bpp).
    InterleavedRle,
    /// Bitmap update, uncompressed.
    BitmapUncompressed,
    /// Graphics pipeline (MS-RDPEGFX) commands, counted per rectangle painted: H.264 AVC420
    /// (one per region rectangle of a frame).
    GfxAvc420,
    /// H.264 AVC444 or AVC444v2, per region rectangle.
    GfxAvc444,
    /// RDP 6.0 planar on the pipeline.
    GfxPlanar,
    GfxRemoteFx,
    GfxClearCodec,
    /// Uncompressed on the pipeline.
    GfxUncompressed,
    /// RemoteFX Progressive, per command.
    GfxProgressive,
    GfxAlpha,
    /// SolidFill rectangles.
    GfxSolidFill,
    /// SurfaceToSurface copies (per destination).
    GfxSurfaceToSurface,
    /// CacheToSurface pastes (per destination).
    GfxCacheToSurface,
}

const FASTPATH_UPDATETYPE_BITMAP: u8 = 0x1;
const FASTPATH_UPDATETYPE_SURFCMDS: u8 = 0x4;
const FASTPATH_FRAGMENT_SINGLE: u8 = 0x0;
const FASTPATH_FRAGMENT_FIRST: u8 = 0x2;
const CMDTYPE_SET_SURFACE_BITS: u16 = 0x1;
const CMDTYPE_FRAME_MARKER: u16 = 0x4;
const CMDTYPE_STREAM_SURFACE_BITS: u16 = 0x6;
const BITMAP_COMPRESSION: u16 = 0x1;

/// Lists the codecs used by the graphics updates in one fast-path output PDU.
///
/// Only unfragmented updates and the first fragment of a fragmented one are looked at, and in
/// a fragment only the commands that are complete in it: enough to tell which codec the server
/// chose without reassembling anything.
pub fn fastpath_codecs(frame: &[u8], remotefx_id: u8, out: &mut Vec<Codec>) {
    first_fragments(frame, |code, data| match code {
        FASTPATH_UPDATETYPE_SURFCMDS => surface_command_codecs(data, remotefx_id, out),
        FASTPATH_UPDATETYPE_BITMAP => bitmap_update_codecs(data, out),
        _ => {}
    });
}

/// Which kind of pointer update the server sent (fast-path update codes 0x5 to 0xC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointerUpdate {
    Hidden,
    Default,
    Position,
    /// 24 bpp Color Pointer.
    Color,
    /// A shape from the client's pointer cache, by index.
    Cached,
    /// New Pointer (any bpp, up to 96x96).
    New,
    /// Large Pointer (up to 384x384).
    Large,
}

/// Lists the pointer updates in one fast-path output PDU (a fragmented one counts once, at
/// its first fragment).
pub fn fastpath_pointer_updates(frame: &[u8], out: &mut Vec<PointerUpdate>) {
    first_fragments(frame, |code, _| {
        out.extend(match code {
            0x5 => Some(PointerUpdate::Hidden),
            0x6 => Some(PointerUpdate::Default),
            0x8 => Some(PointerUpdate::Position),
            0x9 => Some(PointerUpdate::Color),
            0xA => Some(PointerUpdate::Cached),
            0xB => Some(PointerUpdate::New),
            0xC => Some(PointerUpdate::Large),
            _ => None,
        })
    });
}

/// Calls `f` with the update code and data of every uncompressed update in a fast-path output
/// PDU that is unfragmented or the first fragment of one.
fn first_fragments(frame: &[u8], mut f: impl FnMut(u8, &[u8])) {
    // TS_FP_UPDATE_PDU: fpOutputHeader, then a 1- or 2-byte length.
    let Some(&len1) = frame.get(1) else { return };
    let mut rest = if len1 & 0x80 != 0 {
        frame.get(3..)
    } else {
        frame.get(2..)
    }
    .unwrap_or(&[]);
    while let Some(&header) = rest.first() {
        let code = header & 0xF;
        let fragmentation = (header >> 4) & 0x3;
        let compressed = (header >> 6) & 0x2 != 0;
        let skip = if compressed { 2 } else { 1 };
        let Some(size) = rest
            .get(skip..skip + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        else {
            return;
        };
        let start = skip + 2;
        let Some(data) = rest.get(start..start + size) else {
            return;
        };
        rest = &rest[start + size..];
        if compressed
            || !matches!(
                fragmentation,
                FASTPATH_FRAGMENT_SINGLE | FASTPATH_FRAGMENT_FIRST
            )
        {
            continue;
        }
        f(code, data);
    }
}

fn surface_command_codecs(mut data: &[u8], remotefx_id: u8, out: &mut Vec<Codec>) {
    while data.len() >= 2 {
        let cmd = u16::from_le_bytes([data[0], data[1]]);
        match cmd {
            CMDTYPE_FRAME_MARKER => data = data.get(8..).unwrap_or(&[]),
            CMDTYPE_SET_SURFACE_BITS | CMDTYPE_STREAM_SURFACE_BITS => {
                // cmdType(2) + destRect(8) + TS_BITMAP_DATA_EX: bpp, flags, reserved, codecID,
                // width(2), height(2), bitmapDataLength(4), [exBitmapDataHeader(24)], data.
                let Some(hdr) = data.get(10..22) else { return };
                let codec_id = hdr[3];
                let has_ex_header = hdr[1] & 0x1 != 0;
                let length = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
                out.push(match codec_id {
                    0 => Codec::SurfaceUncompressed,
                    id if id == remotefx_id => Codec::RemoteFx,
                    id => Codec::SurfaceOther(id),
                });
                let end = 22 + if has_ex_header { 24 } else { 0 } + length;
                data = data.get(end..).unwrap_or(&[]);
            }
            _ => return,
        }
    }
}

fn bitmap_update_codecs(data: &[u8], out: &mut Vec<Codec>) {
    // updateType(2) + numberRectangles(2), then TS_BITMAP_DATA: destRect(8), width(2),
    // height(2), bitsPerPixel(2), flags(2), bitmapLength(2), bitmapDataStream.
    let Some(count) = data.get(2..4).map(|b| u16::from_le_bytes([b[0], b[1]])) else {
        return;
    };
    let mut rest = data.get(4..).unwrap_or(&[]);
    for _ in 0..count {
        let Some(hdr) = rest.get(..18) else { return };
        let bpp = u16::from_le_bytes([hdr[12], hdr[13]]);
        let flags = u16::from_le_bytes([hdr[14], hdr[15]]);
        let length = usize::from(u16::from_le_bytes([hdr[16], hdr[17]]));
        out.push(if flags & BITMAP_COMPRESSION == 0 {
            Codec::BitmapUncompressed
        } else if bpp == 32 {
            Codec::Planar
        } else {
            Codec::InterleavedRle
        });
        rest = rest.get(18 + length..).unwrap_or(&[]);
    }
}

const CHANNEL_FLAG_FIRST: u32 = 0x1;
const CHANNEL_PACKET_COMPRESSED: u32 = 0x0020_0000;
const DYNVC_DATA_FIRST: u8 = 0x2;
const DYNVC_DATA: u8 = 0x3;
const DYNVC_DATA_FIRST_COMPRESSED: u8 = 0x6;
const DYNVC_DATA_COMPRESSED: u8 = 0x7;

/// The payload bytes one slow-path frame carries for dynamic channel `dvc` of the `drdynvc`
/// static channel (MCS id `drdynvc`); 0 for anything else.
///
/// Counted at the first chunk of each static-channel message, whose CHANNEL_PDU_HEADER gives
/// the message's whole length (MS-RDPBCGR 2.2.6.1.1), minus the dynamic channel's Data or Data
/// First header (MS-RDPEDYC 2.2.3). A message compressed at the static-channel level cannot be
/// attributed without decompressing it, and is not counted (we do not offer that compression).
pub fn dvc_payload_bytes(frame: &[u8], drdynvc: u16, dvc: u32) -> u64 {
    let Ok(ctx) = ironrdp_pdu::mcs::decode_send_data_indication(frame) else {
        return 0;
    };
    if ctx.channel_id != drdynvc {
        return 0;
    }
    let data = ctx.user_data;
    let (Some(length), Some(flags), Some(&header)) = (
        data.get(0..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        data.get(4..8)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        data.get(8),
    ) else {
        return 0;
    };
    if flags & CHANNEL_FLAG_FIRST == 0 || flags & CHANNEL_PACKET_COMPRESSED != 0 {
        return 0;
    }
    let field = |code: u8| [1usize, 2, 4, 4][usize::from(code & 0x3)];
    let (cmd, id_len) = (header >> 4, field(header));
    let header_len = match cmd {
        DYNVC_DATA_FIRST | DYNVC_DATA_FIRST_COMPRESSED => 1 + id_len + field(header >> 2),
        DYNVC_DATA | DYNVC_DATA_COMPRESSED => 1 + id_len,
        _ => return 0,
    };
    let Some(id) = data.get(9..9 + id_len) else {
        return 0;
    };
    let id = id
        .iter()
        .rev()
        .fold(0u32, |acc, &b| acc << 8 | u32::from(b));
    if id != dvc {
        return 0;
    }
    u64::from(length).saturating_sub(header_len as u64)
}

/// A stream that counts the bytes read from it into a shared counter.
pub struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, read: Arc<AtomicU64>) -> Self {
        Self { inner, read }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The X.224 frames (TPKT, big-endian length at bytes 2..4) in `bytes`.
    fn frames(mut bytes: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            out.push(&bytes[..len]);
            bytes = &bytes[len..];
        }
        out
    }

    #[test]
    fn dvc_payload_bytes_counts_one_channel_across_chunks_and_id_sizes() {
        use ironrdp_dvc::pdu::{DataFirstPdu, DataPdu, DrdynvcDataPdu};
        use ironrdp_svc::{SvcMessage, server_encode_svc_messages};
        const DRDYNVC: u16 = 1004;
        let wire = |pdus: Vec<DrdynvcDataPdu>, mcs: u16| {
            let messages = pdus.into_iter().map(SvcMessage::from).collect();
            server_encode_svc_messages(messages, mcs, 1007).unwrap()
        };
        let count = |bytes: &[u8], dvc: u32| -> u64 {
            frames(bytes)
                .iter()
                .map(|f| dvc_payload_bytes(f, DRDYNVC, dvc))
                .sum()
        };
        let first = wire(
            vec![DrdynvcDataPdu::DataFirst(DataFirstPdu::new(
                7,
                1800,
                vec![1; 1500],
            ))],
            DRDYNVC,
        );
        assert_eq!(count(&first, 7), 1500);
        assert_eq!(count(&first, 8), 0, "another dynamic channel");
        let rest = wire(
            vec![DrdynvcDataPdu::Data(DataPdu::new(7, vec![2; 300]))],
            DRDYNVC,
        );
        assert_eq!(count(&rest, 7), 300);
        assert_eq!(
            count(
                &wire(
                    vec![DrdynvcDataPdu::Data(DataPdu::new(7, vec![2; 300]))],
                    1005
                ),
                7
            ),
            0,
            "another static channel"
        );
        // A two-byte channel id, and a message the static channel splits into 1600-byte chunks:
        // counted once, at its first chunk.
        let big = wire(
            vec![DrdynvcDataPdu::Data(DataPdu::new(300, vec![3; 5000]))],
            DRDYNVC,
        );
        assert!(frames(&big).len() > 3);
        assert_eq!(count(&big, 300), 5000);
        assert_eq!(count(&big, 300 & 0xFF), 0);
        // Not a PDU at all.
        assert_eq!(dvc_payload_bytes(&[3, 0, 0, 4], DRDYNVC, 7), 0);
    }

    #[test]
    fn preconnection_pdu_v1_layout() {
        // cbSize=16, Flags=0, Version=1 (PRECONNECTION_PDU_V1), Id, all little-endian.
        assert_eq!(
            preconnection_pdu(0x0102_0304),
            [16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 3, 2, 1]
        );
        assert_eq!(preconnection_pdu(7)[12..], [7, 0, 0, 0]);
    }

    #[test]
    fn preconnection_pdu_round_trips_through_ironrdp() {
        let bytes = preconnection_pdu(42);
        let pcb: PreconnectionBlob = ironrdp_core::decode(&bytes).unwrap();
        assert_eq!(pcb.id, 42);
        assert_eq!(pcb.version, PcbVersion::V1);
        assert!(pcb.v2_payload.is_none());
    }

    /// A Set Error Info PDU as a server sends it: TPKT, X.224 data, MCS Send Data Indication
    /// on channel 1003, Share Control + Share Data headers, then the code.
    fn error_info_frame(channel: u16, code: u32) -> Vec<u8> {
        let mut share = Vec::new();
        share.extend_from_slice(&22u16.to_le_bytes()); // totalLength
        share.extend_from_slice(&0x17u16.to_le_bytes()); // PDUTYPE_DATAPDU | TS_PROTOCOL_VERSION
        share.extend_from_slice(&1002u16.to_le_bytes()); // pduSource
        share.extend_from_slice(&0x1_03EAu32.to_le_bytes()); // shareId
        share.extend_from_slice(&[0, 1]); // pad, streamId
        share.extend_from_slice(&8u16.to_le_bytes()); // uncompressedLength
        share.extend_from_slice(&[0x2F, 0]); // pduType2, compressedType
        share.extend_from_slice(&0u16.to_le_bytes()); // compressedLength
        share.extend_from_slice(&code.to_le_bytes());

        let mut mcs = vec![0x68, 0x00, 0x01]; // SendDataIndication, initiator 1001
        mcs.extend_from_slice(&channel.to_be_bytes());
        mcs.push(0x70); // priority/segmentation
        mcs.push(share.len() as u8); // PER length (short form)
        mcs.extend_from_slice(&share);

        let mut frame = vec![0x03, 0x00, 0, 0, 0x02, 0xF0, 0x80];
        frame.extend_from_slice(&mcs);
        let len = frame.len() as u16;
        frame[2..4].copy_from_slice(&len.to_be_bytes());
        frame
    }

    #[test]
    fn finds_the_error_info_code_even_when_ironrdp_does_not_know_it() {
        assert_eq!(
            set_error_info(&error_info_frame(1003, 0xC), Some(1003)),
            Some(0xC)
        );
        assert_eq!(
            set_error_info(&error_info_frame(1003, 0xDEAD), None),
            Some(0xDEAD)
        );
        assert_eq!(
            set_error_info(&error_info_frame(1004, 0xC), Some(1003)),
            None
        );
        // Cross-check the hand-built frame with IronRDP's own decoder.
        let frame = error_info_frame(1003, 0x5);
        let ctx = ironrdp_pdu::mcs::decode_send_data_indication(&frame).unwrap();
        assert_eq!(ctx.channel_id, 1003);
        assert_eq!(ctx.user_data.len(), 22);
    }

    #[test]
    fn codec_census_reads_surface_bits_and_bitmap_updates() {
        // A single fast-path update holding a frame marker and one RemoteFX surface-bits command.
        let mut cmds = Vec::new();
        cmds.extend_from_slice(&CMDTYPE_FRAME_MARKER.to_le_bytes());
        cmds.extend_from_slice(&[0, 0, 1, 0, 0, 0]);
        cmds.extend_from_slice(&CMDTYPE_STREAM_SURFACE_BITS.to_le_bytes());
        cmds.extend_from_slice(&[0; 8]); // destRect
        cmds.extend_from_slice(&[32, 0, 0, 3]); // bpp, flags, reserved, codecID
        cmds.extend_from_slice(&[64, 0, 64, 0]); // width, height
        cmds.extend_from_slice(&3u32.to_le_bytes());
        cmds.extend_from_slice(&[9, 9, 9]);
        let mut bitmap = vec![1, 0, 2, 0];
        for (bpp, flags) in [(32u16, 1u16), (16, 1)] {
            bitmap.extend_from_slice(&[0; 8]);
            bitmap.extend_from_slice(&[4, 0, 4, 0]);
            bitmap.extend_from_slice(&bpp.to_le_bytes());
            bitmap.extend_from_slice(&flags.to_le_bytes());
            bitmap.extend_from_slice(&2u16.to_le_bytes());
            bitmap.extend_from_slice(&[0, 0]);
        }
        let mut body = Vec::new();
        for (code, data) in [
            (FASTPATH_UPDATETYPE_SURFCMDS, &cmds),
            (FASTPATH_UPDATETYPE_BITMAP, &bitmap),
        ] {
            body.push(code);
            body.extend_from_slice(&(data.len() as u16).to_le_bytes());
            body.extend_from_slice(data);
        }
        let total = body.len() + 3;
        let mut frame = vec![0x00, 0x80 | (total >> 8) as u8, total as u8];
        frame.extend_from_slice(&body);

        let mut seen = Vec::new();
        fastpath_codecs(&frame, 3, &mut seen);
        assert_eq!(
            seen,
            [Codec::RemoteFx, Codec::Planar, Codec::InterleavedRle]
        );
        seen.clear();
        fastpath_codecs(&frame, 5, &mut seen);
        assert_eq!(seen[0], Codec::SurfaceOther(3));
    }
}
