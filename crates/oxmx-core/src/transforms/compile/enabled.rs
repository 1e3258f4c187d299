//! The global switch: with compilation disabled (`disable_compile()`, or the environment
//! variable `OXMX_DISABLE_COMPILE=1` at start-up) a compiled function just calls the original,
//! which makes a suspected compile problem easy to rule in or out.

use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not read yet, 1: enabled, 2: disabled.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether `compile` traces and fuses (true unless disabled).
pub fn compile_enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var("OXMX_DISABLE_COMPILE").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
            // A concurrent `set_compile_enabled` wins over the environment.
            let _ = STATE.compare_exchange(0, if off { 2 } else { 1 }, Ordering::Relaxed, Ordering::Relaxed);
            STATE.load(Ordering::Relaxed) == 1
        }
    }
}

/// Turns compilation on or off for the whole process.
pub fn set_compile_enabled(enabled: bool) {
    STATE.store(if enabled { 1 } else { 2 }, Ordering::Relaxed);
}

/// MLX's `disable_compile`.
pub fn disable_compile() {
    set_compile_enabled(false)
}

/// MLX's `enable_compile`.
pub fn enable_compile() {
    set_compile_enabled(true)
}
