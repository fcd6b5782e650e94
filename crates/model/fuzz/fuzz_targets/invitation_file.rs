//! `ConnectionString::parse_bytes` on any file content (UTF-8, UTF-16 with a byte-order mark,
//! or neither): never panics, and what it accepts reads back equal after formatting.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rdhost_model::invitation::check_parse_bytes(data);
});
