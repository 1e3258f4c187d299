//! The lazy graph: nodes, evaluated data and the scheduler.

pub mod data;
pub mod fuse_eval;
pub(crate) mod node;
pub mod scheduler;
pub(crate) mod trace;

pub use data::Data;
pub use fuse_eval::{eval_fused_regions, eval_fusion_enabled, set_eval_fusion};
pub use node::Spec;
pub use scheduler::{async_eval, eval};
