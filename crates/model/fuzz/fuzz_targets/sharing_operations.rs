//! Any sequence of sharing operations (invite, revoke, admit, set level, control request,
//! terminate, leave, pause, resume, rect, close) keeps the sharing model and the session table
//! in step and never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rdhost_model::sharing::check_operations(data);
});
