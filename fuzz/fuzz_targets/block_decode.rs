//! Any bytes as a stored block: parsed and its records decoded to a value or an error,
//! never a panic (the block proptest runs the same property on mangled real blocks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = keyledger_ledger::block::Block::parse(data) {
        for record in block.records() {
            let _ = keyledger_ledger::codec::decode_record(record);
        }
    }
});
