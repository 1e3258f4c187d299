//! A process-wide on/off switch whose first reading comes from an environment variable and
//! which code can flip afterwards (`compile`'s and eval-time fusion's).

use std::sync::atomic::{AtomicU8, Ordering};

pub(crate) struct Switch {
    /// 0: not read yet, 1: on, 2: off.
    state: AtomicU8,
    var: &'static str,
    /// Whether the variable's value (when set) turns the switch off.
    off_by: fn(&str) -> bool,
}

impl Switch {
    pub(crate) const fn new(var: &'static str, off_by: fn(&str) -> bool) -> Switch {
        Switch { state: AtomicU8::new(0), var, off_by }
    }

    pub(crate) fn get(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let off = std::env::var(self.var).is_ok_and(|v| (self.off_by)(&v));
                // A concurrent `set` wins over the environment.
                let _ = self.state.compare_exchange(0, if off { 2 } else { 1 }, Ordering::Relaxed, Ordering::Relaxed);
                self.state.load(Ordering::Relaxed) == 1
            }
        }
    }

    /// Sets the switch; returns the previous setting.
    pub(crate) fn set(&self, on: bool) -> bool {
        let was = self.get();
        self.state.store(if on { 1 } else { 2 }, Ordering::Relaxed);
        was
    }
}
