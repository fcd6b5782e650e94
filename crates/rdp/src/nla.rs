//! NLA (CredSSP, MS-CSSP) with NTLM for many users.
//!
//! IronRDP's acceptor runs CredSSP against one preloaded account; a host has many. This loop
//! drives sspi's CredSSP server with a credentials proxy that looks each user's NT hash up when
//! the client names itself. The hash, never a password, is what NTLM needs.

use std::io;
use std::sync::{Arc, Mutex};

use ironrdp_async::{Framed, FramedRead, FramedWrite};
use ironrdp_connector::sspi::credssp::{
    CredSspServer, CredentialsProxy, EarlyUserAuthResult, NStatusCode, ServerMode, ServerState, TsRequest,
};
use ironrdp_connector::sspi::generator::GeneratorState;
use ironrdp_connector::sspi::ntlm::NtlmConfig;
use ironrdp_connector::sspi::{AuthIdentity, ErrorKind, NTLM_HASH_PREFIX, Username};
use ironrdp_core::{DecodeResult, other_err};
use ironrdp_pdu::PduHint;

/// Frames one TSRequest (a DER SEQUENCE) off the stream.
#[derive(Debug, Clone, Copy)]
struct TsRequestHint;

impl PduHint for TsRequestHint {
    fn find_size(&self, bytes: &[u8]) -> DecodeResult<Option<(bool, usize)>> {
        match TsRequest::read_length(bytes) {
            Ok(length) => Ok(Some((true, length))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(other_err!("TsRequest", source: e)),
        }
    }
}

/// Looks NT hashes up by account name.
struct HashLookup<F> {
    nt_hash: F,
}

impl<F: FnMut(&str) -> Option<[u8; 16]> + Send> CredentialsProxy for HashLookup<F> {
    type AuthenticationData = AuthIdentity;

    fn auth_data_by_user(&mut self, username: &Username) -> io::Result<AuthIdentity> {
        let hash = (self.nt_hash)(username.account_name()).ok_or_else(|| io::Error::other("no NT hash for this user"))?;
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        Ok(AuthIdentity { username: username.clone(), password: format!("{NTLM_HASH_PREFIX}{hex}").into() })
    }

    fn auth_data(&mut self) -> io::Result<Vec<AuthIdentity>> {
        Ok(Vec::new())
    }
}

/// The outcome of a CredSSP exchange.
pub(crate) enum NlaOutcome {
    /// The client proved it knows this account's password.
    Authenticated(String),
    /// It did not; the client was told (TSRequest error code / early user auth result).
    Refused { user: Option<String>, reason: String },
}

/// Run CredSSP on `framed` (already inside TLS). `public_key` is our certificate's subject public
/// key, which CredSSP binds to. `hybrid_ex`: send the Early User Authorization Result after.
pub(crate) async fn run<S, F>(
    framed: &mut Framed<S>,
    public_key: Vec<u8>,
    hybrid_ex: bool,
    nt_hash: F,
) -> io::Result<NlaOutcome>
where
    S: FramedRead + FramedWrite,
    F: FnMut(&str) -> Option<[u8; 16]> + Send,
{
    let named = Arc::new(Mutex::new(None::<String>));
    let recorder = Arc::clone(&named);
    let mut nt_hash = nt_hash;
    let lookup = move |user: &str| {
        *recorder.lock().unwrap() = Some(user.to_owned());
        nt_hash(user)
    };
    let proxy = HashLookup { nt_hash: lookup };
    let mut server = CredSspServer::new(public_key, proxy, ServerMode::Ntlm(NtlmConfig::default()))
        .map_err(io::Error::other)?;
    let outcome = loop {
        let pdu = framed.read_by_hint(&TsRequestHint).await?;
        let request = TsRequest::from_buffer(&pdu)?;
        let result = {
            let mut generator = server.process(request);
            match generator.start() {
                GeneratorState::Completed(result) => result,
                // Only Kerberos asks for network round trips; NTLM never does.
                GeneratorState::Suspended(_) => {
                    return Err(io::Error::other("CredSSP asked for a network request (Kerberos is not offered)"));
                }
            }
        };
        match result {
            Ok(ServerState::ReplyNeeded(reply)) => write_ts_request(framed, &reply).await?,
            Ok(ServerState::Finished(identity)) => break NlaOutcome::Authenticated(identity.username.account_name().to_owned()),
            Err(error) => {
                if let Some(mut reply) = error.ts_request.map(|r| *r) {
                    // A wrong password or unknown user is reported as Windows does, so the client
                    // can say "logon failure".
                    if error.error.error_type == ErrorKind::LogonDenied {
                        reply.error_code = Some(NStatusCode::LOGON_FAILURE);
                    }
                    let _ = write_ts_request(framed, &reply).await;
                }
                let user = named.lock().unwrap().clone();
                break NlaOutcome::Refused { user, reason: error.error.to_string() };
            }
        }
    };
    if hybrid_ex {
        let result = match outcome {
            NlaOutcome::Authenticated(_) => EarlyUserAuthResult::Success,
            NlaOutcome::Refused { .. } => EarlyUserAuthResult::AccessDenied,
        };
        let mut buf = Vec::new();
        result.to_buffer(&mut buf)?;
        framed.write_all(&buf).await?;
    }
    Ok(outcome)
}

async fn write_ts_request<S: FramedWrite>(framed: &mut Framed<S>, request: &TsRequest) -> io::Result<()> {
    let len = usize::from(request.buffer_len().map_err(io::Error::other)?);
    let mut buf = Vec::with_capacity(len);
    request.encode_ts_request(&mut buf)?;
    framed.write_all(&buf).await
}
