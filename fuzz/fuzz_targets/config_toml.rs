//! `Registry::from_toml` on arbitrary text: a clear error or a registry whose every part works.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        breakwater_fuzz::loaded(breakwater::Registry::from_toml(text));
    }
});
