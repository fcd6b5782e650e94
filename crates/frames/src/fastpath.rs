//! Fast-path output framing (MS-RDPBCGR 2.2.9.1.2.1): one logical update split into fragments
//! that fit the client's reassembly limits.

use ironrdp_core::{Encode as _, WriteCursor};
use ironrdp_pdu::fast_path::{EncryptionFlags, FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode};

/// Largest payload per fast-path update PDU: the 15-bit length field less the headers.
const MAX_FRAGMENT: usize = 16_000;

/// Append `data` as fast-path update PDUs with `code` to `out`, fragmenting as needed.
pub fn fastpath_updates(code: UpdateCode, data: &[u8], out: &mut Vec<u8>) {
    // An update without data (default or hidden pointer) is still one PDU.
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(MAX_FRAGMENT).collect() };
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        let fragmentation = match (i, chunks.len()) {
            (_, 1) => Fragmentation::Single,
            (0, _) => Fragmentation::First,
            (i, _) if i == last => Fragmentation::Last,
            _ => Fragmentation::Next,
        };
        let update = FastPathUpdatePdu {
            fragmentation,
            update_code: code,
            compression_flags: None,
            compression_type: None,
            data: chunk,
        };
        let header = FastPathHeader::new(EncryptionFlags::empty(), update.size());
        let start = out.len();
        out.resize(start + header.size() + update.size(), 0);
        let mut cursor = WriteCursor::new(&mut out[start..]);
        // Sizes were computed from the same values just above: encoding cannot run short.
        header.encode(&mut cursor).expect("fast-path header fits");
        update.encode(&mut cursor).expect("fast-path update fits");
        let written = cursor.pos();
        out.truncate(start + written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::decode;

    #[test]
    fn large_update_is_fragmented_and_reassembles() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        fastpath_updates(UpdateCode::SurfaceCommands, &data, &mut out);
        let mut rest = &out[..];
        let mut reassembled = Vec::new();
        let mut frags = Vec::new();
        while !rest.is_empty() {
            let header: FastPathHeader = decode(rest).unwrap();
            let total = header.size() + header.data_length;
            let pdu: FastPathUpdatePdu<'_> = decode(&rest[header.size()..total]).unwrap();
            frags.push(pdu.fragmentation);
            reassembled.extend_from_slice(pdu.data);
            rest = &rest[total..];
        }
        assert_eq!(reassembled, data);
        assert_eq!(frags.first(), Some(&Fragmentation::First));
        assert_eq!(frags.last(), Some(&Fragmentation::Last));
    }

    #[test]
    fn an_update_without_data_is_one_pdu() {
        let mut out = Vec::new();
        fastpath_updates(UpdateCode::DefaultPointer, &[], &mut out);
        let header: FastPathHeader = decode(&out[..]).unwrap();
        assert_eq!(header.size() + header.data_length, out.len());
        let pdu: FastPathUpdatePdu<'_> = decode(&out[header.size()..]).unwrap();
        assert_eq!((pdu.update_code, pdu.fragmentation, pdu.data.len()), (UpdateCode::DefaultPointer, Fragmentation::Single, 0));
    }
}
