//! Arbitrary bytes into the npy reader: it must return Ok or Err, never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxmx_core::io;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = io::load_npy_bytes(data) {
        // Read the loaded data back: views (Fortran order) must be readable too.
        let _ = io::array_le_bytes(&a);
    }
});
