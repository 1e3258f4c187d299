//! Graph nodes. An `Array` is an `Arc<Node>`; a pending node points to the `Op` that computes it
//! (shared with its sibling outputs), which holds the inputs. When the op has run, its outputs
//! become `Ready` and drop the op, so evaluated graphs free themselves. Dropping a long chain
//! never recurses: `Op::drop` hands its inputs to a per-thread worklist.

use super::data::Data;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Error;
use crate::primitives::Primitive;
use crate::shape::Shape;

/// Shape and dtype of an op's output.
pub type Spec = (Shape, Dtype);
use crate::stream::Stream;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub(crate) struct Node {
    pub id: u64,
    pub dtype: Dtype,
    pub shape: Shape,
    /// This node's position among its op's outputs (read by transforms of multi-output ops).
    #[allow(dead_code)]
    pub index: usize,
    pub state: Mutex<State>,
    /// The op that built this node, kept past evaluation while a transform traces (see
    /// `graph::trace`): transforms walk the graph after the traced function may have evaluated it.
    pub tape: Mutex<Option<Arc<Op>>>,
    /// Set by a thread about to block until this node is computed: only then does the worker
    /// that computes it wake the waiters (waking them after every op costs a context switch per
    /// op, which dominated small graphs such as a decode step).
    pub waited: AtomicBool,
}

pub(crate) enum State {
    /// Built, not yet submitted for evaluation.
    Pending(Arc<Op>),
    /// Submitted to its stream's worker (the node keeps its op alive until it has run).
    Scheduled(#[allow(dead_code)] Arc<Op>),
    Ready(Data),
    Failed(Error),
}

pub(crate) struct Op {
    pub prim: Primitive,
    pub inputs: Vec<Array>,
    pub stream: Stream,
    /// Shape and dtype of every output (kept here too, so a kernel can run after an output dropped).
    pub specs: Vec<Spec>,
    pub outputs: OnceLock<Vec<Weak<Node>>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Node {
    pub fn new(dtype: Dtype, shape: Shape, index: usize, state: State) -> Node {
        let tape = match &state {
            State::Pending(op) if super::trace::is_tracing() => Some(op.clone()),
            _ => None,
        };
        Node { id: next_id(), dtype, shape, index, state: Mutex::new(state), tape: Mutex::new(tape), waited: AtomicBool::new(false) }
    }
    pub fn tape(&self) -> Option<Arc<Op>> {
        self.tape.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn take_tape(&self) -> Option<Arc<Op>> {
        self.tape.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

thread_local! {
    static DROP_LIST: RefCell<Vec<Array>> = const { RefCell::new(Vec::new()) };
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

impl Drop for Op {
    fn drop(&mut self) {
        let inputs = std::mem::take(&mut self.inputs);
        if inputs.is_empty() {
            return;
        }
        let _ = DROP_LIST.try_with(|list| {
            list.borrow_mut().extend(inputs);
            if DRAINING.with(|d| d.replace(true)) {
                // An outer drop on this thread is already draining the list.
                return;
            }
            loop {
                let next = list.borrow_mut().pop();
                match next {
                    // Dropping may run Op::drop again, which only appends to the list.
                    Some(a) => drop(a),
                    None => break,
                }
            }
            DRAINING.with(|d| d.set(false));
        });
    }
}
