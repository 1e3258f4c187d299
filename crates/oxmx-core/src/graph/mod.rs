//! The lazy graph: nodes, evaluated data and the scheduler.

pub mod data;
pub(crate) mod node;
pub mod scheduler;
pub(crate) mod trace;

pub use data::Data;
pub use node::Spec;
pub use scheduler::{async_eval, eval};
