//! Arbitrary bytes into the npz reader: it must return Ok or Err, never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxmx_core::io;

fuzz_target!(|data: &[u8]| {
    if let Ok(loaded) = io::load_npz_bytes(data) {
        // Read the loaded data back: views must be readable too.
        for (_, a) in &loaded {
            let _ = io::array_le_bytes(a);
        }
    }
});
