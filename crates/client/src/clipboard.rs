//! Our client's end of the `cliprdr` static virtual channel (MS-RDPECLIP), text only: what we
//! put on our clipboard is announced to the server and sent when it asks; what the server
//! announces we can paste. Line ends are `\n` on our side, CRLF on the wire.

use ironrdp_cliprdr::backend::CliprdrBackend;
use ironrdp_cliprdr::pdu::{
    ClipboardFormat, ClipboardFormatId, ClipboardGeneralCapabilityFlags, FileContentsRequest,
    FileContentsResponse, FormatDataRequest, FormatDataResponse, LockDataId,
    OwnedFormatDataResponse,
};
use ironrdp_core::impl_as_any;

/// How much clipboard traffic went by; for tests (a server that fetches lazily asks only when
/// something pastes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClipboardCounters {
    /// Format Lists the server sent (it announced what its clipboard holds).
    pub format_lists: u64,
    /// Format Data Requests the server sent (something in the session pasted our text).
    pub data_requests: u64,
    /// Format Data Responses we got (answers to our pastes).
    pub data_responses: u64,
}

/// What the channel said, for the client to act on after the PDU.
#[derive(Debug)]
pub(crate) enum Note {
    /// The server is ready for our first Format List (Monitor Ready).
    FormatListWanted,
    /// The server accepted our Format List: the channel is initialized.
    Ready,
    ServerCopied(Vec<ClipboardFormatId>),
    DataRequested(ClipboardFormatId),
    DataArrived(Result<Vec<u8>, ()>),
}

#[derive(Debug, Default)]
pub(crate) struct ClipboardBackend {
    pub notes: Vec<Note>,
}

impl_as_any!(ClipboardBackend);

impl CliprdrBackend for ClipboardBackend {
    fn temporary_directory(&self) -> &str {
        ".cdr"
    }

    fn client_capabilities(&self) -> ClipboardGeneralCapabilityFlags {
        ClipboardGeneralCapabilityFlags::empty()
    }

    fn on_ready(&mut self) {
        self.notes.push(Note::Ready);
    }

    fn on_request_format_list(&mut self) {
        self.notes.push(Note::FormatListWanted);
    }

    fn on_process_negotiated_capabilities(&mut self, _: ClipboardGeneralCapabilityFlags) {}

    fn on_remote_copy(&mut self, available_formats: &[ClipboardFormat]) {
        self.notes.push(Note::ServerCopied(
            available_formats.iter().map(ClipboardFormat::id).collect(),
        ));
    }

    fn on_format_data_request(&mut self, request: FormatDataRequest) {
        self.notes.push(Note::DataRequested(request.format));
    }

    fn on_format_data_response(&mut self, response: FormatDataResponse<'_>) {
        let data = if response.is_error() {
            Err(())
        } else {
            Ok(response.data().to_vec())
        };
        self.notes.push(Note::DataArrived(data));
    }

    fn on_file_contents_request(&mut self, _: FileContentsRequest) {}

    fn on_file_contents_response(&mut self, _: FileContentsResponse<'_>) {}

    fn on_lock(&mut self, _: LockDataId) {}

    fn on_unlock(&mut self, _: LockDataId) {}
}

/// The clipboard state a client keeps.
#[derive(Debug, Default)]
pub(crate) struct ClipboardState {
    /// Our clipboard's text.
    pub local: Option<String>,
    /// The formats of the server's newest Format List.
    pub server_formats: Option<Vec<u32>>,
    pub ready: bool,
    /// The answer to our paste, once it came.
    pub pasted: Option<Result<String, String>>,
    pub counters: ClipboardCounters,
}

impl ClipboardState {
    /// The formats our clipboard holds.
    pub fn local_formats(&self) -> Vec<ClipboardFormat> {
        match self.local {
            Some(_) => vec![
                ClipboardFormat::new(ClipboardFormatId::CF_UNICODETEXT),
                ClipboardFormat::new(ClipboardFormatId::CF_TEXT),
            ],
            None => Vec::new(),
        }
    }

    /// Our answer to the server's Format Data Request.
    pub fn answer(&self, format: ClipboardFormatId) -> OwnedFormatDataResponse {
        let Some(text) = &self.local else {
            return OwnedFormatDataResponse::new_error();
        };
        let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
        match format {
            ClipboardFormatId::CF_UNICODETEXT => OwnedFormatDataResponse::new_unicode_string(&text),
            ClipboardFormatId::CF_TEXT => {
                let mut bytes: Vec<u8> = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                    .collect();
                bytes.push(0);
                OwnedFormatDataResponse::new_data(bytes)
            }
            _ => OwnedFormatDataResponse::new_error(),
        }
    }

    /// The text format to ask the server for, if it offers one.
    pub fn server_text_format(&self) -> Option<ClipboardFormatId> {
        let formats = self.server_formats.as_ref()?;
        [
            ClipboardFormatId::CF_UNICODETEXT,
            ClipboardFormatId::CF_TEXT,
        ]
        .into_iter()
        .find(|f| formats.contains(&f.value()))
    }
}

/// The server's data as text: up to the first NUL, CRLF as `\n`.
pub(crate) fn decode_text(data: &[u8], format: ClipboardFormatId) -> String {
    let text: String = if format == ClipboardFormatId::CF_UNICODETEXT {
        let units = data
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .take_while(|&u| u != 0);
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    } else {
        data.iter()
            .take_while(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect()
    };
    text.replace("\r\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_crlf_and_a_nul() {
        let state = ClipboardState {
            local: Some("a\nb é".into()),
            ..ClipboardState::default()
        };
        let unicode = state.answer(ClipboardFormatId::CF_UNICODETEXT);
        let want: Vec<u8> = "a\r\nb é\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(unicode.data(), want);
        assert_eq!(
            state.answer(ClipboardFormatId::CF_TEXT).data(),
            b"a\r\nb \xe9\0"
        );
        assert!(state.answer(ClipboardFormatId::CF_DIB).is_error());
        assert!(
            ClipboardState::default()
                .answer(ClipboardFormatId::CF_UNICODETEXT)
                .is_error()
        );
        assert_eq!(
            decode_text(&want, ClipboardFormatId::CF_UNICODETEXT),
            "a\nb é"
        );
    }

    #[test]
    fn the_best_text_format_is_asked_for() {
        let mut state = ClipboardState::default();
        assert_eq!(state.server_text_format(), None);
        state.server_formats = Some(vec![1, 13]);
        assert_eq!(
            state.server_text_format(),
            Some(ClipboardFormatId::CF_UNICODETEXT)
        );
        state.server_formats = Some(vec![8]);
        assert_eq!(state.server_text_format(), None);
    }
}
