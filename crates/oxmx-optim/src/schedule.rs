//! Learning-rate schedules (MLX's `mlx.optimizers.schedulers`).
//!
//! Each returns a [`Schedule`]: the value as a function of the optimizer's step count. Values
//! are computed in float32, as MLX computes them on its uint64 step array.

use crate::learning_rate::Schedule;
use oxmx_core::prelude::*;
use std::sync::Arc;

/// `init * decay_rate^step`.
pub fn exponential_decay(init: f32, decay_rate: f32) -> Schedule {
    Arc::new(move |step: u64| init * decay_rate.powf(step as f32))
}

/// `init * decay_rate^(step / step_size)` (integer division): decays every `step_size` steps.
/// `step_size` must be at least 1.
pub fn step_decay(init: f32, decay_rate: f32, step_size: u64) -> Result<Schedule> {
    if step_size < 1 {
        return Err(Error::invalid(format!("[step_decay] step_size must be greater than 0, but got {step_size}.")));
    }
    Ok(Arc::new(move |step: u64| init * decay_rate.powf((step / step_size) as f32)))
}

/// Cosine decay from `init` to `end` over `decay_steps` steps, then constant at `end`:
/// `end + 0.5 * (1 + cos(π * min(step, decay_steps) / decay_steps)) * (init - end)`.
/// `decay_steps` must be at least 1.
pub fn cosine_decay(init: f32, decay_steps: u64, end: f32) -> Result<Schedule> {
    if decay_steps < 1 {
        return Err(Error::invalid(format!("[cosine_decay] decay_steps must be greater than 0, but got {decay_steps}.")));
    }
    // MLX forms these factors as Python floats (double) and rounds them to float32 once.
    let freq = (std::f64::consts::PI / decay_steps as f64) as f32;
    let range = (init as f64 - end as f64) as f32;
    Ok(Arc::new(move |step: u64| {
        let s = step.min(decay_steps) as f32;
        let decay = 0.5f32 * (1.0f32 + (freq * s).cos());
        end + decay * range
    }))
}

/// Linear interpolation from `init` to `end` over `steps` steps, then constant at `end`
/// (a warm-up when `init < end`). `steps` must be at least 1.
pub fn linear_schedule(init: f32, end: f32, steps: u64) -> Result<Schedule> {
    if steps < 1 {
        return Err(Error::invalid(format!("[linear_schedule] steps must be greater than 0, but got {steps}.")));
    }
    let slope = ((end as f64 - init as f64) / steps as f64) as f32;
    Ok(Arc::new(move |step: u64| step.min(steps) as f32 * slope + init))
}

/// Runs `schedules[0]` until `boundaries[0]`, then `schedules[1]` (counting steps from that
/// boundary), and so on; e.g. a linear warm-up joined to a cosine decay. Needs one boundary
/// fewer than schedules, and at least one schedule.
pub fn join_schedules(schedules: Vec<Schedule>, boundaries: Vec<u64>) -> Result<Schedule> {
    if schedules.is_empty() {
        return Err(Error::invalid("[join_schedules] Must provide at least 1 schedule to join."));
    }
    if schedules.len() != boundaries.len() + 1 {
        return Err(Error::invalid(format!(
            "[join_schedules] Received {} boundaries but expected {}.",
            boundaries.len(),
            schedules.len() - 1
        )));
    }
    Ok(Arc::new(move |step: u64| {
        let mut out = schedules[0](step);
        // As MLX's chain of `where(step < boundary, ...)`: later boundaries win when passed, even
        // if boundaries are not sorted.
        for (b, s) in boundaries.iter().zip(&schedules[1..]) {
            if step >= *b {
                out = s(step - b);
            }
        }
        out
    }))
}
