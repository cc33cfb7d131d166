//! Any bytes through the command reader: an answer (a command or an error naming what is
//! wrong), never a panic; and an accepted command reads back the same from its own JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(command) = keyledger_ledger::wire::parse_command(text) {
        let json = keyledger_ledger::wire::command_to_json(&command).to_string();
        let again = keyledger_ledger::wire::parse_command(&json).expect("its own JSON reads");
        assert_eq!(again, command);
    }
});
