//! libpam, loaded at run time: `dlopen("libpam.so.0")` instead of linking against `libpam.so`.
//!
//! Linking needs the development package (`libpam0g-dev` on Debian) on the machine that builds;
//! the runtime library `libpam.so.0` is on every Debian system (priority required). Loading it
//! at run time lets `cargo build` work with nothing but Rust, and a host without libpam (a
//! minimal container) still runs: it only cannot check system users, and says so at start.
//!
//! One transaction ([`Library::authenticate`]) is `pam_start`, `pam_authenticate`,
//! `pam_acct_mgmt`, `pam_get_item(PAM_USER)`, `pam_end`. The conversation answers the password
//! to prompts without echo and the user name to prompts with echo; nothing else.
//!
//! A session's PAM session ([`Library::open_session`]: `pam_setcred(PAM_ESTABLISH_CRED)`,
//! `pam_open_session`, `pam_getenvlist`; at its end `pam_close_session`,
//! `pam_setcred(PAM_DELETE_CRED)`, `pam_end`) is held by a helper process of its own
//! ([`session_helper_main`], `rdhost` run with [`SESSION_HELPER_ARG`]): pam_systemd registers
//! the process that opens the session as the logind session's leader and moves it into the
//! session's scope, and pam_limits, pam_keyinit, pam_loginuid change that process. Done in the
//! host, every session would move the host itself. One process per session also keeps each PAM
//! handle on one thread, and the session is closed when the host goes away (its pipe ends).

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::{Arc, OnceLock};

/// The runtime library's name (its soname; `libpam.so` without the `.0` is the dev package's).
pub const LIBPAM: &str = "libpam.so.0";

/// What to install when [`LIBPAM`] is missing.
pub const PACKAGE_HINT: &str = "install the package libpam0g (Debian, Ubuntu: apt-get install libpam0g; Fedora: dnf install pam)";

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_USER_ITEM: c_int = 2;
const PAM_TTY_ITEM: c_int = 3;
const PAM_RHOST_ITEM: c_int = 4;
const PAM_ESTABLISH_CRED: c_int = 0x0002;
const PAM_DELETE_CRED: c_int = 0x0004;
const PAM_FAIL_DELAY_ITEM: c_int = 10;
const PAM_SILENT: c_int = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_AUTH_ERR: c_int = 7;

/// `pam_handle_t`: opaque.
#[repr(C)]
struct Handle {
    _private: [u8; 0],
}

/// `struct pam_message`.
#[repr(C)]
struct Message {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct Response {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = extern "C" fn(c_int, *mut *const Message, *mut *mut Response, *mut c_void) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct Conv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

type StartFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *const Conv, *mut *mut Handle) -> c_int;
type FlagsFn = unsafe extern "C" fn(*mut Handle, c_int) -> c_int;
type GetItemFn = unsafe extern "C" fn(*const Handle, c_int, *mut *const c_void) -> c_int;
type SetItemFn = unsafe extern "C" fn(*mut Handle, c_int, *const c_void) -> c_int;
type StrerrorFn = unsafe extern "C" fn(*mut Handle, c_int) -> *const c_char;
type GetEnvListFn = unsafe extern "C" fn(*mut Handle) -> *mut *mut c_char;
type PutEnvFn = unsafe extern "C" fn(*mut Handle, *const c_char) -> c_int;

/// libpam could not be loaded, or lacks a function rdhost calls. The text says what to install.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PAM is unavailable: cannot load {soname}: {reason}; {PACKAGE_HINT}")]
pub struct LoadError {
    pub soname: String,
    pub reason: String,
}

/// How a PAM transaction ended, when it did not let the user in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// These credentials do not get in (unknown user, wrong password, expired, locked).
    Denied(String),
    /// PAM itself failed (misconfigured service, module error); the text is PAM's.
    Failed(String),
}

/// libpam's functions, resolved once. The library is never unloaded while this lives (modules
/// PAM loads may keep pointers into it).
pub struct Library {
    soname: String,
    start: StartFn,
    authenticate: FlagsFn,
    acct_mgmt: FlagsFn,
    get_item: GetItemFn,
    set_item: SetItemFn,
    strerror: StrerrorFn,
    end: FlagsFn,
    setcred: FlagsFn,
    open_session: FlagsFn,
    close_session: FlagsFn,
    getenvlist: GetEnvListFn,
    putenv: PutEnvFn,
    _lib: libloading::os::unix::Library,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("soname", &self.soname)
            .finish_non_exhaustive()
    }
}

/// The system's libpam ([`LIBPAM`]), loaded on first use and kept for the life of the process.
pub fn system() -> Result<Arc<Library>, LoadError> {
    static SYSTEM: OnceLock<Result<Arc<Library>, LoadError>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| Library::load(LIBPAM).map(Arc::new))
        .clone()
}

impl Library {
    /// Load `soname` and resolve every function rdhost calls. [`system`] is what the host uses;
    /// another name is for tests (a library that is not there).
    pub fn load(soname: &str) -> Result<Library, LoadError> {
        let fail = |reason: String| {
            // dlerror() starts with the name we already give.
            let reason = reason
                .strip_prefix(&format!("{soname}: "))
                .map(str::to_owned)
                .unwrap_or(reason);
            LoadError {
                soname: soname.to_owned(),
                reason,
            }
        };
        use libloading::os::unix::{Library as Dl, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading libpam runs its initialisers, which only set up its own state.
        // RTLD_NOW: a broken library fails here, not in the middle of a logon.
        let lib = unsafe { Dl::open(Some(soname), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| fail(e.to_string()))?;
        /// Resolve `name` as a function of type `T` (the caller names the C prototype's type).
        unsafe fn sym<T: Copy>(lib: &Dl, name: &str) -> Result<T, String> {
            // SAFETY: the caller states the symbol's type; the pointer lives as long as `lib`,
            // which the `Library` keeps.
            unsafe { lib.get::<T>(name.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| format!("it lacks {name}: {e}"))
        }
        // SAFETY: each type is the prototype from <security/pam_appl.h> for that function.
        unsafe {
            Ok(Library {
                soname: soname.to_owned(),
                start: sym::<StartFn>(&lib, "pam_start").map_err(fail)?,
                authenticate: sym::<FlagsFn>(&lib, "pam_authenticate").map_err(fail)?,
                acct_mgmt: sym::<FlagsFn>(&lib, "pam_acct_mgmt").map_err(fail)?,
                get_item: sym::<GetItemFn>(&lib, "pam_get_item").map_err(fail)?,
                set_item: sym::<SetItemFn>(&lib, "pam_set_item").map_err(fail)?,
                strerror: sym::<StrerrorFn>(&lib, "pam_strerror").map_err(fail)?,
                end: sym::<FlagsFn>(&lib, "pam_end").map_err(fail)?,
                setcred: sym::<FlagsFn>(&lib, "pam_setcred").map_err(fail)?,
                open_session: sym::<FlagsFn>(&lib, "pam_open_session").map_err(fail)?,
                close_session: sym::<FlagsFn>(&lib, "pam_close_session").map_err(fail)?,
                getenvlist: sym::<GetEnvListFn>(&lib, "pam_getenvlist").map_err(fail)?,
                putenv: sym::<PutEnvFn>(&lib, "pam_putenv").map_err(fail)?,
                _lib: lib,
            })
        }
    }

    /// The name it was loaded by.
    pub fn soname(&self) -> &str {
        &self.soname
    }

    /// One PAM transaction for `user` with `password` in `service`: authenticate, then check the
    /// account. Returns the user name PAM ends up with (a module may map it). Blocking, and not
    /// to be run concurrently (some modules are not thread-safe): the caller serialises.
    pub fn authenticate(
        &self,
        service: &CStr,
        user: &str,
        password: &str,
    ) -> Result<String, Refusal> {
        let (Ok(c_user), Ok(c_password)) = (CString::new(user), CString::new(password)) else {
            // NUL bytes: no such account or password.
            return Err(Refusal::Denied(
                "the user name or password contains a NUL byte".into(),
            ));
        };
        let conv_data = Conversation {
            user: c_user,
            password: c_password,
        };
        let conv = Conv {
            conv: Some(converse),
            appdata_ptr: &conv_data as *const Conversation as *mut c_void,
        };
        let mut handle: *mut Handle = std::ptr::null_mut();
        // SAFETY: all pointers are valid NUL-terminated strings / live structs for the call;
        // PAM copies the conversation struct.
        let rc = unsafe {
            (self.start)(
                service.as_ptr(),
                conv_data.user.as_ptr(),
                &conv,
                &mut handle,
            )
        };
        if rc != PAM_SUCCESS || handle.is_null() {
            return Err(Refusal::Failed(format!("pam_start failed with code {rc}")));
        }
        let h = handle;
        let result = (|| {
            // SAFETY: h is a live handle; the item is a function pointer of the documented type.
            unsafe { (self.set_item)(h, PAM_FAIL_DELAY_ITEM, no_fail_delay as *const c_void) };
            // SAFETY: h is live; conv_data outlives these calls.
            let rc = unsafe { (self.authenticate)(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
            if rc != PAM_SUCCESS {
                return Err(rc);
            }
            // SAFETY: as above.
            let rc = unsafe { (self.acct_mgmt)(h, PAM_SILENT) };
            if rc != PAM_SUCCESS {
                return Err(rc);
            }
            let mut item: *const c_void = std::ptr::null();
            // SAFETY: PAM_USER is a NUL-terminated string owned by the handle; copied out below.
            let rc = unsafe { (self.get_item)(h, PAM_USER_ITEM, &mut item) };
            if rc == PAM_SUCCESS && !item.is_null() {
                // SAFETY: see above; the handle is still live.
                let name = unsafe { CStr::from_ptr(item as *const c_char) };
                Ok(name.to_string_lossy().into_owned())
            } else {
                Ok(user.to_owned())
            }
        })();
        let result = result.map_err(|rc| {
            // SAFETY: h is live; pam_strerror returns a static string or null.
            let s = unsafe { (self.strerror)(h, rc) };
            let text = if s.is_null() {
                format!("PAM error {rc}")
            } else {
                // SAFETY: non-null NUL-terminated string from libpam.
                format!(
                    "PAM: {} (code {rc})",
                    unsafe { CStr::from_ptr(s) }.to_string_lossy()
                )
            };
            if denied(rc) {
                Refusal::Denied(text)
            } else {
                Refusal::Failed(text)
            }
        });
        let end_status = if result.is_ok() {
            PAM_SUCCESS
        } else {
            PAM_AUTH_ERR
        };
        // SAFETY: h is live and not used after this.
        unsafe { (self.end)(h, end_status) };
        result
    }
}

impl Library {
    /// PAM's text for `rc` on handle `h`.
    fn error_text(&self, h: *mut Handle, what: &str, rc: c_int) -> String {
        // SAFETY: h is live; pam_strerror returns a static string or null.
        let s = unsafe { (self.strerror)(h, rc) };
        if s.is_null() {
            format!("{what}: PAM error {rc}")
        } else {
            // SAFETY: non-null NUL-terminated string from libpam.
            format!("{what}: {} (code {rc})", unsafe { CStr::from_ptr(s) }.to_string_lossy())
        }
    }

    /// Open a PAM session for `request.user` in `request.service`: PAM_TTY, PAM_RHOST and the
    /// given variables set, credentials established, the session opened. No password is
    /// asked (the user logged on already). The session's environment is
    /// [`Session::env`]; [`Session::close`] ends it. Blocking; the handle must stay on this
    /// thread.
    pub fn open_session(&self, request: &SessionRequest) -> Result<Session<'_>, String> {
        let cstring = |what: &str, text: &str| CString::new(text).map_err(|_| format!("the {what} contains a NUL byte"));
        let service = cstring("PAM service", &request.service)?;
        let conversation = Box::new(Conversation { user: cstring("user name", &request.user)?, password: CString::default() });
        let tty = cstring("tty", &request.tty)?;
        let rhost = request.rhost.as_deref().map(|r| cstring("remote host", r)).transpose()?;
        let variables =
            request.env.iter().map(|(k, v)| cstring("environment", &format!("{k}={v}"))).collect::<Result<Vec<_>, _>>()?;
        let conv = Conv { conv: Some(converse), appdata_ptr: &*conversation as *const Conversation as *mut c_void };
        let mut handle: *mut Handle = std::ptr::null_mut();
        // SAFETY: valid strings and structs for the call; PAM copies `conv`, whose appdata (the
        // boxed conversation) lives in the returned Session as long as the handle.
        let rc = unsafe { (self.start)(service.as_ptr(), conversation.user.as_ptr(), &conv, &mut handle) };
        if rc != PAM_SUCCESS || handle.is_null() {
            return Err(format!("pam_start({:?}) failed with code {rc}", request.service));
        }
        let h = handle;
        let fail = |what: &str, rc: c_int| {
            let text = self.error_text(h, what, rc);
            // SAFETY: h is live and not used after this.
            unsafe { (self.end)(h, rc) };
            text
        };
        let mut items = vec![(PAM_TTY_ITEM, &tty)];
        if let Some(rhost) = &rhost {
            items.push((PAM_RHOST_ITEM, rhost));
        }
        for (item, value) in items {
            // SAFETY: h is live; PAM copies the string.
            let rc = unsafe { (self.set_item)(h, item, value.as_ptr() as *const c_void) };
            if rc != PAM_SUCCESS {
                return Err(fail("pam_set_item", rc));
            }
        }
        for variable in &variables {
            // SAFETY: h is live; PAM copies the "NAME=value" string.
            let rc = unsafe { (self.putenv)(h, variable.as_ptr()) };
            if rc != PAM_SUCCESS {
                return Err(fail("pam_putenv", rc));
            }
        }
        // SAFETY: h is live.
        let rc = unsafe { (self.setcred)(h, PAM_ESTABLISH_CRED | PAM_SILENT) };
        if rc != PAM_SUCCESS {
            return Err(fail("pam_setcred(PAM_ESTABLISH_CRED)", rc));
        }
        // SAFETY: h is live.
        let rc = unsafe { (self.open_session)(h, PAM_SILENT) };
        if rc != PAM_SUCCESS {
            // SAFETY: h is live; undo the credentials before ending.
            unsafe { (self.setcred)(h, PAM_DELETE_CRED | PAM_SILENT) };
            return Err(fail("pam_open_session", rc));
        }
        let env = self.env_list(h);
        Ok(Session { library: self, handle: h, env, _conversation: conversation })
    }

    /// `pam_getenvlist`, copied out and freed.
    fn env_list(&self, h: *mut Handle) -> Vec<(String, String)> {
        // SAFETY: h is live; the result is a malloc'd NULL-terminated array of malloc'd strings
        // that the caller frees.
        let list = unsafe { (self.getenvlist)(h) };
        let mut env = Vec::new();
        if list.is_null() {
            return env;
        }
        let mut i = 0;
        loop {
            // SAFETY: within the NULL-terminated array.
            let entry = unsafe { *list.add(i) };
            if entry.is_null() {
                break;
            }
            // SAFETY: a NUL-terminated string from libpam.
            let text = unsafe { CStr::from_ptr(entry) }.to_string_lossy().into_owned();
            if let Some((key, value)) = text.split_once('=') {
                env.push((key.to_owned(), value.to_owned()));
            }
            // SAFETY: ours to free (pam_getenvlist(3)); the value may be secret-ish.
            unsafe { free_secret(entry) };
            i += 1;
        }
        // SAFETY: the array itself, malloc'd by libpam.
        unsafe { libc::free(list as *mut c_void) };
        env
    }
}

/// What a session's PAM session is opened with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRequest {
    pub service: String,
    /// The system account the session runs as.
    pub user: String,
    /// PAM_TTY: `rdhost/<session id>` (no device: the session may have several or none).
    pub tty: String,
    /// PAM_RHOST: the client's address.
    pub rhost: Option<String>,
    /// Set with pam_putenv before the session opens (XDG_SESSION_TYPE, XDG_SESSION_CLASS for
    /// pam_systemd).
    pub env: Vec<(String, String)>,
}

/// An open PAM session. Not `Send`: the handle stays on the thread that opened it.
pub struct Session<'a> {
    library: &'a Library,
    handle: *mut Handle,
    env: Vec<(String, String)>,
    /// The conversation's data, which the handle points to.
    _conversation: Box<Conversation>,
}

impl Session<'_> {
    /// The environment the session's modules set (pam_env, pam_systemd's XDG_RUNTIME_DIR, ...).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// `pam_close_session`, `pam_setcred(PAM_DELETE_CRED)`, `pam_end`.
    pub fn close(self) -> Result<(), String> {
        let (lib, h) = (self.library, self.handle);
        // SAFETY: h is live until pam_end below.
        let closed = unsafe { (lib.close_session)(h, PAM_SILENT) };
        let closed = if closed == PAM_SUCCESS { Ok(()) } else { Err(lib.error_text(h, "pam_close_session", closed)) };
        // SAFETY: as above.
        let deleted = unsafe { (lib.setcred)(h, PAM_DELETE_CRED | PAM_SILENT) };
        let deleted = if deleted == PAM_SUCCESS { Ok(()) } else { Err(lib.error_text(h, "pam_setcred(PAM_DELETE_CRED)", deleted)) };
        // SAFETY: h is not used after this.
        unsafe { (lib.end)(h, PAM_SUCCESS) };
        closed.and(deleted)
    }
}

/// The argument that makes `rdhost` the PAM session helper (not a subcommand users see).
pub const SESSION_HELPER_ARG: &str = "__pam-session";

/// The helper's first answer, one JSON line on stdout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperReply {
    /// The session is open; its environment.
    Opened { env: Vec<(String, String)> },
    Failed { error: String },
}

/// The PAM session helper: reads a [`SessionRequest`] (one JSON line) on stdin, opens the
/// session, answers a [`HelperReply`] line on stdout, then holds the session until stdin ends
/// (the host closes it at the session's end, or exits) and closes it. Termination signals are
/// ignored so that a service stop still closes every session (the host's exit ends stdin).
pub fn session_helper_main() -> std::process::ExitCode {
    use std::io::{BufRead as _, Write as _};
    use std::process::ExitCode;
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: SIG_IGN for a signal; no handler code involved.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let reply = |reply: &HelperReply| {
        let mut out = std::io::stdout().lock();
        let line = serde_json::to_string(reply).expect("a reply serialises");
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    if stdin.read_line(&mut line).is_err() {
        return ExitCode::FAILURE;
    }
    let request: SessionRequest = match serde_json::from_str(&line) {
        Ok(request) => request,
        Err(e) => {
            reply(&HelperReply::Failed { error: format!("bad request: {e}") });
            return ExitCode::FAILURE;
        }
    };
    let library = match system() {
        Ok(library) => library,
        Err(e) => {
            reply(&HelperReply::Failed { error: e.to_string() });
            return ExitCode::FAILURE;
        }
    };
    let session = match library.open_session(&request) {
        Ok(session) => session,
        Err(error) => {
            reply(&HelperReply::Failed { error });
            return ExitCode::FAILURE;
        }
    };
    reply(&HelperReply::Opened { env: session.env().to_vec() });
    // Held until the host lets go of the pipe: nothing more is sent.
    let _ = std::io::copy(&mut stdin, &mut std::io::sink());
    match session.close() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdhost: PAM session of {} ({}): {e}", request.user, request.tty);
            ExitCode::FAILURE
        }
    }
}

/// Return codes that mean "these credentials do not get in" rather than "PAM is broken".
fn denied(code: c_int) -> bool {
    // PERM_DENIED 6, AUTH_ERR 7, CRED_INSUFFICIENT 8, USER_UNKNOWN 10, MAXTRIES 11,
    // NEW_AUTHTOK_REQD 12 (expired password: cannot be changed over RDP), ACCT_EXPIRED 13.
    matches!(code, 6 | 7 | 8 | 10 | 11 | 12 | 13)
}

/// Data for the conversation callback.
struct Conversation {
    user: CString,
    password: CString,
}

/// PAM asks questions through this; we answer the user name and the password, nothing else.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const Message,
    resp: *mut *mut Response,
    appdata: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the &Conversation we registered, alive for the whole pam_* call.
    let conv = unsafe { &*(appdata as *const Conversation) };
    // SAFETY: PAM frees the array and each `resp` with free(), so they must come from malloc.
    let replies = unsafe { libc::calloc(n, size_of::<Response>()) } as *mut Response;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes `msg` as an array of n pointers to messages.
        let style = unsafe { (**msg.add(i)).msg_style };
        let answer = match style {
            PAM_PROMPT_ECHO_OFF => Some(&conv.password),
            PAM_PROMPT_ECHO_ON => Some(&conv.user),
            _ => None, // error/info text: nothing to answer
        };
        if let Some(answer) = answer {
            // SAFETY: strdup copies a NUL-terminated string into malloc'd memory.
            let copy = unsafe { libc::strdup(answer.as_ptr()) };
            if copy.is_null() {
                for j in 0..i {
                    // SAFETY: earlier replies were strdup'd or are null (calloc); free both fine.
                    unsafe { free_secret((*replies.add(j)).resp) };
                }
                // SAFETY: allocated above with calloc.
                unsafe { libc::free(replies as *mut c_void) };
                return PAM_BUF_ERR;
            }
            // SAFETY: i < n, within the calloc'd array.
            unsafe { (*replies.add(i)).resp = copy };
        }
    }
    // SAFETY: resp is a valid out-pointer per the PAM conversation contract.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Zero then free a malloc'd C string (a password copy we own on an error path).
unsafe fn free_secret(p: *mut c_char) {
    if !p.is_null() {
        // SAFETY: caller guarantees p is a NUL-terminated malloc'd string.
        unsafe {
            let len = libc::strlen(p);
            std::ptr::write_bytes(p, 0, len);
            libc::free(p as *mut c_void);
        }
    }
}

/// PAM_FAIL_DELAY hook: the host delays failures itself (per source address), so PAM's own
/// delay (about 2 s in pam_unix) must not stack on top.
extern "C" fn no_fail_delay(_retval: c_int, _usec: c_uint, _appdata: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_library_loads_and_refuses_an_unknown_user() {
        // libpam0g is installed wherever these tests run (it is on every Debian system).
        let pam = system().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pam.soname(), LIBPAM);
        let refusal = pam
            .authenticate(c"rdhost", "rdhost-no-such-user-4711", "not the password")
            .unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Denied(text) if text.starts_with("PAM: ")),
            "{refusal:?}"
        );
        // The same library each time: loaded once.
        assert!(Arc::ptr_eq(&system().unwrap(), &pam));
    }

    #[test]
    fn a_missing_library_says_what_to_install() {
        let err = Library::load("libpam-rdhost-missing.so.9").unwrap_err();
        assert_eq!(err.soname, "libpam-rdhost-missing.so.9");
        let text = err.to_string();
        assert!(
            text.starts_with("PAM is unavailable: cannot load libpam-rdhost-missing.so.9"),
            "{text}"
        );
        assert!(text.contains("libpam0g"), "{text}");
        assert!(
            !err.reason.starts_with("libpam-rdhost-missing"),
            "the name once: {text}"
        );
    }

    #[test]
    fn a_library_without_pam_functions_is_refused() {
        // libc is there and is no libpam: the first missing function is named.
        let err = Library::load("libc.so.6").unwrap_err();
        assert!(err.reason.contains("lacks pam_start"), "{err}");
    }
}
