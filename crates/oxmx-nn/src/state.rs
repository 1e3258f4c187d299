//! Per-module mutable state that is not a parameter: the training flag and the frozen set.

use std::collections::BTreeSet;

/// Put one `ModuleState` field in a derived module to give it `train`/`eval` behaviour and to
/// let its own parameters be frozen. Built-in layers all have one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleState {
    pub training: bool,
    /// Names of this module's own parameters (paths relative to the module) that are frozen.
    pub frozen: BTreeSet<String>,
}

impl Default for ModuleState {
    /// MLX modules start in training mode with nothing frozen.
    fn default() -> Self {
        ModuleState { training: true, frozen: BTreeSet::new() }
    }
}
