//! `Registry::from_toml` on arbitrary text: a clear error or a registry whose every part works.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match breakwater::Registry::from_toml(text) {
        Ok(registry) => breakwater_fuzz::exercise(&registry),
        // The message is built and read: formatting it must not panic either.
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
