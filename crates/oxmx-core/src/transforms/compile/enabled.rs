//! The global switch: with compilation disabled (`disable_compile()`, or the environment
//! variable `OXMX_DISABLE_COMPILE=1` at start-up) a compiled function just calls the original,
//! which makes a suspected compile problem easy to rule in or out.

use crate::switch::Switch;

/// Off when `OXMX_DISABLE_COMPILE` is set to anything but empty, `0` or `false`.
fn disables(v: &str) -> bool {
    !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
}

static SWITCH: Switch = Switch::new("OXMX_DISABLE_COMPILE", disables);

/// Whether `compile` traces and fuses (true unless disabled).
pub fn compile_enabled() -> bool {
    SWITCH.get()
}

/// Turns compilation on or off for the whole process.
pub fn set_compile_enabled(enabled: bool) {
    SWITCH.set(enabled);
}

/// MLX's `disable_compile`.
pub fn disable_compile() {
    set_compile_enabled(false)
}

/// MLX's `enable_compile`.
pub fn enable_compile() {
    set_compile_enabled(true)
}
