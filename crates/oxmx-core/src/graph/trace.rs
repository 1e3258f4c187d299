//! Graph access for transforms. While a transform runs its function (`tracing` > 0 on this
//! thread), every node built keeps the op that produced it (`Node::tape`) even after it is
//! evaluated, so `vjp`/`jvp`/`vmap`/`compile` can walk from outputs back to inputs whatever the
//! function did (including calling `eval` or `item` on intermediates). Outside transforms nodes
//! keep no tape and evaluated graphs free themselves as before.

use super::node::Op;
use crate::array::Array;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Arc;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

pub(crate) fn is_tracing() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Runs `f` with tracing on. The guard restores the depth even if `f` panics.
pub(crate) fn tracing<R>(f: impl FnOnce() -> R) -> R {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _g = Guard;
    f()
}

/// The op that produced `a` if it was built while tracing (evaluated or not), else `None`.
pub(crate) fn traced_op(a: &Array) -> Option<Arc<Op>> {
    a.0.tape()
}

/// The live output arrays of `op` (`None` where an output was dropped).
pub(crate) fn op_outputs(op: &Op) -> Vec<Option<Array>> {
    op.outputs.get().map(|v| v.iter().map(|w| w.upgrade().map(Array)).collect()).unwrap_or_default()
}

/// Traced ops between `inputs` (by node id, not walked through) and `outputs`, in topological
/// order (inputs before users). Only ops with a tape are walked, so graphs built before tracing
/// began are treated as constants. Iterative: deep graphs cannot overflow the stack.
pub(crate) fn traced_ops(outputs: &[Array], stop: &HashSet<u64>) -> Vec<Arc<Op>> {
    let mut order = Vec::new();
    let mut visited: HashSet<*const Op> = HashSet::new();
    let mut stack: Vec<(Arc<Op>, usize)> = Vec::new();
    for out in outputs {
        if stop.contains(&out.id()) {
            continue;
        }
        let Some(root) = traced_op(out) else { continue };
        if !visited.insert(Arc::as_ptr(&root)) {
            continue;
        }
        stack.push((root, 0));
        while let Some((op, i)) = stack.last_mut() {
            if *i < op.inputs.len() {
                let input = op.inputs[*i].clone();
                *i += 1;
                if stop.contains(&input.id()) {
                    continue;
                }
                if let Some(child) = traced_op(&input) {
                    if visited.insert(Arc::as_ptr(&child)) {
                        stack.push((child, 0));
                    }
                }
            } else {
                let (op, _) = stack.pop().unwrap();
                order.push(op);
            }
        }
    }
    order
}

/// Clears the tapes of every traced node behind `outputs` once the outermost transform is done,
/// so evaluated graphs free themselves as usual again (nested transforms keep them: the outer
/// one still needs them).
pub(crate) fn release_tapes(outputs: &[Array]) {
    if is_tracing() {
        return;
    }
    let ops = traced_ops(outputs, &HashSet::new());
    for a in outputs {
        drop(a.0.take_tape());
    }
    for op in &ops {
        for out in op_outputs(op).into_iter().flatten() {
            drop(out.0.take_tape());
        }
    }
}

/// Runs `f` with tracing off (restored afterwards, even on panic): nodes built inside keep no
/// tape, so transforms treat them as constants and their graphs free after evaluation.
pub(crate) fn untraced<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(self.0));
        }
    }
    let _r = Restore(DEPTH.with(|d| d.replace(0)));
    f()
}
