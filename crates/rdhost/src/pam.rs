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
