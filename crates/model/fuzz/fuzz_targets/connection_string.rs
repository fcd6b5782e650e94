//! `ConnectionString::parse` on any text: never panics, and what it accepts is valid and
//! formats to text that reads back equal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rdhost_model::invitation::check_parse_text(&String::from_utf8_lossy(data));
});
