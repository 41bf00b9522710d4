//! Arbitrary bytes through the pickle reader, the tokenizer reader and, for whatever
//! parses, the writer: re-pickling a parsed value and parsing that must reproduce the
//! same bytes (the writer's output is a fixed point).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = nanochat_pt::parse(data) {
        let _ = value.describe();
        let _ = nanochat_pt::dumps(&value, 2);
        if let Ok(written) = nanochat_pt::dumps(&value, 4) {
            let reparsed = nanochat_pt::parse(&written).expect("the writer's output parses");
            let rewritten = nanochat_pt::dumps(&reparsed, 4).expect("a parsed value re-pickles");
            assert!(rewritten == written, "re-pickling is not a fixed point");
        }
    }
    let _ = nanochat_pt::encoding_from_pickle(data);
});
