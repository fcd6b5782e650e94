//! NLA (CredSSP, MS-CSSP) with NTLM for many users.
//!
//! IronRDP's acceptor runs CredSSP against one preloaded account; a host has many. This loop
//! drives sspi's CredSSP server with a credentials proxy that looks each user's NT hash up when
//! the client names itself. The hash, never a password, is what NTLM needs.
//!
//! Clients send NTLM inside CredSSP in one of two ways. FreeRDP 2 (xfreerdp, Remmina) sends
//! raw NTLM messages. Windows' mstsc and other clients of the Negotiate package (which MS-CSSP
//! specifies; sspi's, for one) wrap them in SPNEGO. The first token says which: SPNEGO's
//! starts with the GSS-API initial-context tag (0x60), raw NTLM with "NTLMSSP\0". For SPNEGO,
//! sspi's Negotiate server checks the client's mechListMIC with the account's keys in the same
//! step that the client names the account, and it takes its accounts when the exchange starts:
//! so the proxy hands it every account NLA can check (see `Authenticate::nla_accounts`),
//! matched by user name alone (a client naming a domain, `HOST\alice`, is not found).

use std::io;
use std::sync::{Arc, Mutex};

use ironrdp_async::{Framed, FramedRead, FramedWrite};
use ironrdp_connector::sspi::credssp::{
    CredSspServer, CredentialsProxy, EarlyUserAuthResult, NStatusCode, ServerMode, ServerState, TsRequest,
};
use ironrdp_connector::sspi::generator::GeneratorState;
use ironrdp_connector::sspi::ntlm::NtlmConfig;
use ironrdp_connector::sspi::{AuthIdentity, ErrorKind, NTLM_HASH_PREFIX, NegotiateConfig, Username};
use ironrdp_core::{DecodeResult, other_err};
use ironrdp_pdu::PduHint;
use tracing::{debug, warn};

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

/// The NT hash as sspi takes it in place of a password.
fn hash_secret(hash: [u8; 16]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{NTLM_HASH_PREFIX}{hex}")
}

/// Looks NT hashes up by account name; lists every account for SPNEGO.
struct HashLookup<F, L> {
    nt_hash: F,
    accounts: Option<L>,
}

impl<F, L> CredentialsProxy for HashLookup<F, L>
where
    F: FnMut(&str) -> Option<[u8; 16]> + Send,
    L: FnOnce() -> Vec<(String, [u8; 16])> + Send,
{
    type AuthenticationData = AuthIdentity;

    fn auth_data_by_user(&mut self, username: &Username) -> io::Result<AuthIdentity> {
        let hash = (self.nt_hash)(username.account_name()).ok_or_else(|| io::Error::other("no NT hash for this user"))?;
        Ok(AuthIdentity { username: username.clone(), password: hash_secret(hash).into() })
    }

    /// Only the Negotiate (SPNEGO) server asks, once, when the exchange starts.
    fn auth_data(&mut self) -> io::Result<Vec<AuthIdentity>> {
        let accounts = self.accounts.take().map(|list| list()).unwrap_or_default();
        if accounts.is_empty() {
            warn!("an NLA client wraps NTLM in SPNEGO, and the host lists no NLA accounts for that: it will be refused");
        }
        Ok(accounts
            .into_iter()
            .filter_map(|(name, hash)| {
                let username = Username::parse(&name).ok()?;
                Some(AuthIdentity { username, password: hash_secret(hash).into() })
            })
            .collect())
    }
}

/// Is `token` (the client's first CredSSP negotiation token) SPNEGO rather than raw NTLM?
fn is_spnego(token: &[u8]) -> bool {
    // GSS-API InitialContextToken: [APPLICATION 0] IMPLICIT SEQUENCE (RFC 2743 3.1).
    token.first() == Some(&0x60)
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
/// `nt_hash` looks an account up once the client names it; `accounts` lists every account NLA
/// can check, asked for only when the client speaks SPNEGO (see the module's documentation).
pub(crate) async fn run<S, F, L>(
    framed: &mut Framed<S>,
    public_key: Vec<u8>,
    hybrid_ex: bool,
    nt_hash: F,
    accounts: L,
) -> io::Result<NlaOutcome>
where
    S: FramedRead + FramedWrite,
    F: FnMut(&str) -> Option<[u8; 16]> + Send,
    L: FnOnce() -> Vec<(String, [u8; 16])> + Send,
{
    let named = Arc::new(Mutex::new(None::<String>));
    let recorder = Arc::clone(&named);
    let mut nt_hash = nt_hash;
    let lookup = move |user: &str| {
        *recorder.lock().unwrap() = Some(user.to_owned());
        nt_hash(user)
    };

    let pdu = framed.read_by_hint(&TsRequestHint).await?;
    let mut request = TsRequest::from_buffer(&pdu)?;
    let spnego = request.nego_tokens.as_deref().is_some_and(is_spnego);
    // Who the client's NTLM AUTHENTICATE names, should the exchange fail before our lookup.
    let mut claimed = None;
    debug!(spnego, "CredSSP: the client's first token");
    let mode = if spnego {
        // NTLM only: Kerberos needs a KDC this host does not have.
        ServerMode::Negotiate(NegotiateConfig::new(Box::new(NtlmConfig::default()), Some("ntlm".into()), String::new()))
    } else {
        ServerMode::Ntlm(NtlmConfig::default())
    };
    let proxy = HashLookup { nt_hash: lookup, accounts: Some(accounts) };
    let mut server = CredSspServer::new(public_key, proxy, mode).map_err(io::Error::other)?;
    let outcome = loop {
        if let Some(user) = request.nego_tokens.as_deref().and_then(ntlm_user) {
            claimed = Some(user);
        }
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
                // The account the client named: from our lookup, or (SPNEGO checks the
                // client's MIC before it) from the client's NTLM AUTHENTICATE message.
                let user = named.lock().unwrap().clone().or(claimed);
                if let Some(mut reply) = error.ts_request.map(|r| *r) {
                    // A wrong password or unknown user is reported as Windows does, so the client
                    // can say "logon failure". Under SPNEGO a wrong password shows first as a
                    // MIC that does not verify, an unknown user as missing credentials.
                    let logon_failure = match error.error.error_type {
                        ErrorKind::LogonDenied => true,
                        ErrorKind::MessageAltered | ErrorKind::NoCredentials | ErrorKind::InvalidToken => spnego,
                        _ => false,
                    };
                    if logon_failure {
                        reply.error_code = Some(NStatusCode::LOGON_FAILURE);
                    }
                    let _ = write_ts_request(framed, &reply).await;
                }
                break NlaOutcome::Refused { user, reason: error.error.to_string() };
            }
        }
        let pdu = framed.read_by_hint(&TsRequestHint).await?;
        request = TsRequest::from_buffer(&pdu)?;
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

/// The user name in an NTLM AUTHENTICATE message somewhere in `token` (raw, or inside SPNEGO's
/// DER, which carries it verbatim): MS-NLMP 2.2.1.3, UserNameFields at offset 36.
fn ntlm_user(token: &[u8]) -> Option<String> {
    const SIGNATURE: &[u8] = b"NTLMSSP\0";
    let start = token.windows(SIGNATURE.len()).position(|w| w == SIGNATURE)?;
    let message = &token[start..];
    let u16_at = |at: usize| message.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| message.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if u32_at(8)? != 3 {
        return None;
    }
    let (len, offset) = (usize::from(u16_at(36)?), u32_at(40)? as usize);
    let name = message.get(offset..offset.checked_add(len)?)?;
    let units: Vec<u16> = name.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).ok().filter(|n| !n.is_empty())
}

async fn write_ts_request<S: FramedWrite>(framed: &mut Framed<S>, request: &TsRequest) -> io::Result<()> {
    let len = usize::from(request.buffer_len().map_err(io::Error::other)?);
    let mut buf = Vec::with_capacity(len);
    request.encode_ts_request(&mut buf)?;
    framed.write_all(&buf).await
}

#[cfg(test)]
mod tests {
    use ironrdp_connector::sspi::credssp::{ClientMode, ClientState, CredSspClient, CredSspMode};
    use ironrdp_connector::sspi::Credentials;
    use ironrdp_tokio::TokioFramed;

    use super::*;

    fn nt_hash_of(password: &str) -> [u8; 16] {
        use md4::Digest as _;
        let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        md4::Md4::digest(&utf16).into()
    }

    /// What CredSSP binds to: any bytes both ends agree on stand in for a certificate's key.
    const PUBLIC_KEY: &[u8] = b"the subject public key of the host's certificate";

    /// A CredSSP client (sspi's, as IronRDP clients use it) logging on as `user` with `password`:
    /// SPNEGO-wrapped NTLM (the Negotiate package, as mstsc) or raw NTLM (as FreeRDP 2). Ok once
    /// it sent its credentials; Err with what it was told otherwise.
    async fn client(framed: &mut TokioFramed<tokio::io::DuplexStream>, spnego: bool, user: &str, password: &str) -> Result<(), String> {
        let identity = AuthIdentity { username: Username::parse(user).unwrap(), password: password.to_owned().into() };
        let mode = if spnego {
            ClientMode::Negotiate(NegotiateConfig::new(Box::new(NtlmConfig::default()), Some("ntlm".into()), "client".into()))
        } else {
            ClientMode::Ntlm(NtlmConfig::default())
        };
        let mut client = CredSspClient::new(
            PUBLIC_KEY.to_vec(),
            Credentials::AuthIdentity(identity),
            CredSspMode::WithCredentials,
            mode,
            "TERMSRV/host".into(),
        )
        .map_err(|e| e.to_string())?;
        let mut request = TsRequest::default();
        let mut first = true;
        loop {
            let state = match client.process(request).start() {
                GeneratorState::Completed(state) => state.map_err(|e| e.to_string())?,
                GeneratorState::Suspended(_) => return Err("the client asked for the network".into()),
            };
            let (reply, last) = match state {
                ClientState::ReplyNeeded(reply) => (reply, false),
                ClientState::FinalMessage(reply) => (reply, true),
            };
            if first {
                let token = reply.nego_tokens.as_deref().unwrap_or_default();
                assert_eq!(is_spnego(token), spnego, "the client's first token is what the test wants");
                first = false;
            }
            write_ts_request(framed, &reply).await.map_err(|e| e.to_string())?;
            if last {
                return Ok(());
            }
            let pdu = framed.read_by_hint(&TsRequestHint).await.map_err(|e| e.to_string())?;
            request = TsRequest::from_buffer(&pdu).map_err(|e| e.to_string())?;
        }
    }

    /// Run `client` against [`run`] for a host whose one account is alice with "right-pw";
    /// `listed`: whether the host lists its accounts for SPNEGO.
    async fn exchange(spnego: bool, user: &str, password: &str, listed: bool) -> (NlaOutcome, Result<(), String>) {
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let mut server_framed = TokioFramed::new(server_end);
        let mut client_framed = TokioFramed::new(client_end);
        let lookup = |name: &str| (name == "alice").then(|| nt_hash_of("right-pw"));
        let accounts = move || if listed { vec![("alice".to_owned(), nt_hash_of("right-pw"))] } else { Vec::new() };
        let server = run(&mut server_framed, PUBLIC_KEY.to_vec(), false, lookup, accounts);
        let (outcome, client) = tokio::join!(server, client(&mut client_framed, spnego, user, password));
        (outcome.expect("the exchange itself runs"), client)
    }

    #[tokio::test]
    async fn raw_ntlm_logs_on() {
        let (outcome, client) = exchange(false, "alice", "right-pw", false).await;
        assert!(matches!(outcome, NlaOutcome::Authenticated(ref user) if user == "alice"));
        assert_eq!(client, Ok(()));
    }

    #[tokio::test]
    async fn ntlm_in_spnego_logs_on() {
        let (outcome, client) = exchange(true, "alice", "right-pw", true).await;
        assert!(matches!(outcome, NlaOutcome::Authenticated(ref user) if user == "alice"), "refused: {}", refusal(&outcome));
        assert_eq!(client, Ok(()));
    }

    fn refusal(outcome: &NlaOutcome) -> String {
        match outcome {
            NlaOutcome::Authenticated(user) => format!("authenticated as {user}"),
            NlaOutcome::Refused { user, reason } => format!("refused {user:?}: {reason}"),
        }
    }

    #[tokio::test]
    async fn wrong_passwords_and_unknown_users_are_a_logon_failure_either_way() {
        for spnego in [false, true] {
            for (user, password) in [("alice", "wrong-pw"), ("mallory", "right-pw")] {
                let (outcome, client) = exchange(spnego, user, password, true).await;
                let NlaOutcome::Refused { user: named, .. } = &outcome else {
                    panic!("spnego {spnego}: {user} with {password} got in");
                };
                assert_eq!(named.as_deref(), Some(user), "spnego {spnego}: the log names who tried");
                let told = client.expect_err("the client is told");
                // 0xC000006D, STATUS_LOGON_FAILURE: what makes FreeRDP and mstsc say so.
                assert!(told.contains("C000006D") || told.to_lowercase().contains("logon"), "spnego {spnego}: client was told {told:?}");
            }
        }
    }

    #[tokio::test]
    async fn spnego_without_listed_accounts_is_refused() {
        let (outcome, client) = exchange(true, "alice", "right-pw", false).await;
        assert!(matches!(outcome, NlaOutcome::Refused { .. }), "{}", refusal(&outcome));
        assert!(client.is_err());
    }

    #[test]
    fn the_user_is_read_from_an_ntlm_authenticate_message() {
        // Signature, type 3, then six security buffers (len, max, offset): the user's is fourth.
        let mut message = b"NTLMSSP\0".to_vec();
        message.extend(3u32.to_le_bytes());
        message.extend([0u8; 24]); // LM and NT responses, domain: empty
        let name: Vec<u8> = "bob".encode_utf16().flat_map(u16::to_le_bytes).collect();
        message.extend((name.len() as u16).to_le_bytes());
        message.extend((name.len() as u16).to_le_bytes());
        message.extend(64u32.to_le_bytes());
        message.resize(64, 0);
        message.extend(&name);
        let mut wrapped = vec![0xA1, 0x81, 0x80, 0x30];
        wrapped.extend(&message);
        assert_eq!(ntlm_user(&wrapped).as_deref(), Some("bob"));
        // A NEGOTIATE message (type 1), a truncated one, garbage: nobody.
        message[8] = 1;
        assert_eq!(ntlm_user(&message), None);
        assert_eq!(ntlm_user(&wrapped[..40]), None);
        assert_eq!(ntlm_user(b"garbage"), None);
    }
}
