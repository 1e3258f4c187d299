//! The learning rate: a constant or a schedule of the step count.

use std::fmt;
use std::sync::Arc;

/// A learning-rate schedule: the value for a step count (see [`crate::schedule`]).
pub type Schedule = Arc<dyn Fn(u64) -> f32 + Send + Sync>;

/// A constant learning rate or a [`Schedule`].
///
/// As in MLX, an optimizer evaluates a schedule at its step count *before* incrementing it: the
/// first update uses `schedule(0)`, the n-th `schedule(n - 1)`.
#[derive(Clone)]
pub enum LearningRate {
    Constant(f32),
    Scheduled(Schedule),
}

impl LearningRate {
    /// A schedule from any function of the step count.
    pub fn schedule(f: impl Fn(u64) -> f32 + Send + Sync + 'static) -> LearningRate {
        LearningRate::Scheduled(Arc::new(f))
    }

    /// The value at `step`.
    pub fn at(&self, step: u64) -> f32 {
        match self {
            LearningRate::Constant(v) => *v,
            LearningRate::Scheduled(s) => s(step),
        }
    }

    pub fn is_scheduled(&self) -> bool {
        matches!(self, LearningRate::Scheduled(_))
    }
}

impl From<f32> for LearningRate {
    fn from(v: f32) -> LearningRate {
        LearningRate::Constant(v)
    }
}

/// Rounds to `f32`, the dtype MLX keeps the learning rate in. Lets float literals (`f64` by
/// default) be passed directly: `Adam::new(1e-3)`.
impl From<f64> for LearningRate {
    fn from(v: f64) -> LearningRate {
        LearningRate::Constant(v as f32)
    }
}

impl From<Schedule> for LearningRate {
    fn from(s: Schedule) -> LearningRate {
        LearningRate::Scheduled(s)
    }
}

impl fmt::Debug for LearningRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LearningRate::Constant(v) => write!(f, "Constant({v})"),
            LearningRate::Scheduled(s) => write!(f, "Scheduled(<fn>, at 0: {})", s(0)),
        }
    }
}
