//! Configuration text: lexing, parsing, building (maps, regexes, variables,
//! inheritance) never panic; a bad file is an error with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = std::env::temp_dir().join("switchyard-fuzz-config");
    if let Err(e) = switchyard::config::load_str(text, &dir) {
        assert!(!e.to_string().is_empty());
    }
});
