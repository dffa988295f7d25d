//! Any bytes as a `wire` task or result frame (what a child process or a
//! worker reads from a pipe). Nothing may panic or allocate past the frame
//! limits, and what decodes re-encodes to the same value.
#![no_main]

use backplane_plugin_api::wire::{TaskMessage, read_result, write_result};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(task) = TaskMessage::read_from(&mut &data[..]) {
        let mut bytes = Vec::new();
        task.write_to(&mut bytes).expect("a decoded task re-encodes");
        let again = TaskMessage::read_from(&mut &bytes[..]).expect("a re-encoded task decodes");
        assert_eq!(again, task);
        assert_eq!(again.inputs.len(), task.inputs.len());
    }
    if let Ok(result) = read_result(&mut &data[..]) {
        let mut bytes = Vec::new();
        write_result(&mut bytes, &result).expect("a decoded result re-encodes");
        let again = read_result(&mut &bytes[..]).expect("a re-encoded result decodes");
        assert_eq!(again.is_ok(), result.is_ok());
    }
});
