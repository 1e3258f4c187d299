//! `eval` / `async_eval`: topologically order the pending graph, hand each stream its ops in
//! order, and wait for the outputs.
//!
//! Each stream has a worker thread. An op whose input is computed on another stream waits for
//! it inside the worker (the cross-stream event). Submission of one eval is atomic with respect to
//! other evals (a global lock), so every stream queue follows one global topological order and
//! cross-stream waits cannot deadlock.

use super::data::Data;
use super::node::{Node, Op, State};
use crate::array::Array;
use crate::backend;
use crate::error::{Error, Result};
use crate::stream::Stream;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Signalled whenever any node becomes Ready or Failed.
struct Completion {
    lock: Mutex<u64>,
    cv: Condvar,
}

fn completion() -> &'static Completion {
    static C: OnceLock<Completion> = OnceLock::new();
    C.get_or_init(|| Completion { lock: Mutex::new(0), cv: Condvar::new() })
}

fn notify_all() {
    let c = completion();
    *c.lock.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    c.cv.notify_all();
}

/// Blocks until `done()` holds, which depends only on the state of `nodes`: they are marked
/// waited so the workers that finish them wake this thread.
fn wait_until(nodes: &[&Node], mut done: impl FnMut() -> bool) {
    for n in nodes {
        n.waited.store(true, Ordering::SeqCst);
    }
    // Pairs with the fence in `run_op`: either that worker sees the flag, or we see its state.
    fence(Ordering::SeqCst);
    let c = completion();
    let mut g = c.lock.lock().unwrap_or_else(|p| p.into_inner());
    while !done() {
        g = c.cv.wait(g).unwrap_or_else(|p| p.into_inner());
    }
}

enum Task {
    /// Ops in order; `in_pool` when none of them can wait on another stream (see `async_eval`).
    Run(Vec<Arc<Op>>, bool),
    /// Synchronisation marker: the sender is told when everything before it has run.
    Fence(Sender<()>),
}

struct Workers {
    queues: Mutex<HashMap<Stream, Sender<Task>>>,
}

fn workers() -> &'static Workers {
    static W: OnceLock<Workers> = OnceLock::new();
    W.get_or_init(|| Workers { queues: Mutex::new(HashMap::new()) })
}

fn submit(stream: Stream, task: Task) {
    let mut q = workers().queues.lock().unwrap_or_else(|p| p.into_inner());
    let tx = q.entry(stream).or_insert_with(|| {
        let (tx, rx) = channel::<Task>();
        std::thread::Builder::new()
            .name(format!("oxmx-stream-{}", stream.index))
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    match task {
                        // `rayon::scope` from this (non-pool) thread runs the closure on a pool
                        // thread: the kernels' parallel loops then start there directly instead
                        // of this thread injecting each op's work and sleeping until it is done
                        // (two wake-ups per op, most of a small decode op's cost). Each op is
                        // dropped once it has run, releasing its inputs early.
                        Task::Run(ops, true) => run_in_pool(ops),
                        Task::Run(ops, false) => run_in_order(ops),
                        Task::Fence(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .expect("spawning a stream worker thread");
        tx
    });
    // The worker never exits while the sender lives, so send cannot fail.
    let _ = tx.send(task);
}

/// Serialises submissions so that all stream queues share one topological order.
fn submit_lock() -> std::sync::MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|p| p.into_inner())
}

/// Submits the pending graph behind `outputs` to the stream workers.
pub fn async_eval(outputs: &[&Array]) {
    let _guard = submit_lock();
    // Sends (and what they need) are walked first, so in `eval(send(x), recv(..))` a send whose
    // input is still pending is not queued behind a receive that blocks the stream.
    let is_send = |a: &&Array| match &*a.0.lock() {
        State::Pending(o) => matches!(o.prim, crate::primitives::Primitive::Distributed(crate::primitives::DistributedOp::Send { .. })),
        _ => false,
    };
    let reordered: Vec<&Array>;
    let outputs = if outputs.iter().any(is_send) {
        // `topological_pending` walks the list from the end.
        reordered = outputs.iter().filter(|a| !is_send(a)).chain(outputs.iter().filter(|a| is_send(a))).copied().collect();
        &reordered[..]
    } else {
        outputs
    };
    let mut order = topological_pending(outputs);
    if order.is_empty() {
        return;
    }
    super::fuse_eval::fuse(&mut order);
    hoist_sends(&mut order);
    // Group by stream keeping order.
    let mut per_stream: Vec<(Stream, Vec<Arc<Op>>)> = Vec::new();
    for op in order {
        match per_stream.iter_mut().find(|(s, _)| *s == op.stream) {
            Some((_, v)) => v.push(op),
            None => per_stream.push((op.stream, vec![op])),
        }
    }
    for (s, ops) in per_stream {
        // A GPU stream's ops only queue kernels: the stream's own thread launches them (a hop
        // to a pool thread would add a wake-up per eval and buy nothing).
        let in_pool = !s.device.is_gpu() && !waits_on_other_streams(s, &ops);
        submit(s, Task::Run(ops, in_pool));
    }
}

/// Moves each `send` to just after the last op it depends on. A stream runs its ops in order
/// and a `recv` blocks it until the peer's message arrives, so in `eval(recv, send)` on every
/// rank of a ring the sends must not wait behind the receives. Moving an op earlier, but after
/// all its inputs, keeps the order topological.
fn hoist_sends(order: &mut Vec<Arc<Op>>) {
    use crate::primitives::{DistributedOp, Primitive};
    let is_send = |op: &Arc<Op>| matches!(op.prim, Primitive::Distributed(DistributedOp::Send { .. }));
    if !order.iter().any(is_send) {
        return;
    }
    let mut out: Vec<Arc<Op>> = Vec::with_capacity(order.len());
    let mut placed: HashMap<*const Op, usize> = HashMap::new();
    for op in order.drain(..) {
        let at = if is_send(&op) {
            // Right after its latest input among the ops placed so far.
            let after = op
                .inputs
                .iter()
                .filter_map(|a| match &*a.0.lock() {
                    State::Pending(o) | State::Scheduled(o) => placed.get(&Arc::as_ptr(o)).copied(),
                    _ => None,
                })
                .max();
            after.map_or(0, |i| i + 1)
        } else {
            out.len()
        };
        if at == out.len() {
            placed.insert(Arc::as_ptr(&op), at);
            out.push(op);
        } else {
            // Later ops shift by one: renumber (only when a send moved).
            out.insert(at, op);
            placed = out.iter().enumerate().map(|(i, o)| (Arc::as_ptr(o), i)).collect();
        }
    }
    *order = out;
}

/// Whether an op of `ops` (all on `stream`) has an input still being computed on another
/// stream. Such a task must run on its stream's own thread: waiting for the other stream on a
/// rayon worker could leave no worker free to compute what is waited for. Inputs on the same
/// stream are computed earlier in the same queue, so they never block.
fn waits_on_other_streams(stream: Stream, ops: &[Arc<Op>]) -> bool {
    ops.iter().flat_map(|op| op.inputs.iter()).any(|a| match &*a.0.lock() {
        State::Pending(o) | State::Scheduled(o) => o.stream != stream,
        State::Ready(_) | State::Failed(_) => false,
    })
}

/// Evaluates `outputs` and waits for them; returns the first error among them.
pub fn eval(outputs: &[&Array]) -> Result<()> {
    async_eval(outputs);
    let nodes: Vec<&Node> = outputs.iter().map(|a| &*a.0).collect();
    wait_until(&nodes, || outputs.iter().all(|a| !matches!(*a.0.lock(), State::Pending(_) | State::Scheduled(_))));
    for a in outputs {
        if let State::Failed(e) = &*a.0.lock() {
            return Err(e.clone());
        }
    }
    Ok(())
}

/// Blocks until every op already submitted to `stream` has run.
pub fn synchronize(stream: Stream) {
    let known = workers().queues.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&stream);
    if !known {
        return;
    }
    let (tx, rx) = channel();
    submit(stream, Task::Fence(tx));
    let _ = rx.recv();
}

/// Post-order of the ops that still need to run, marking them Scheduled. Iterative, so deep
/// graphs cannot overflow the stack.
fn topological_pending(outputs: &[&Array]) -> Vec<Arc<Op>> {
    let mut order = Vec::new();
    let mut visited: HashSet<*const Op> = HashSet::new();
    // (op, next input to visit)
    let mut stack: Vec<(Arc<Op>, usize)> = Vec::new();
    let pending_op = |node: &Node| -> Option<Arc<Op>> {
        match &*node.lock() {
            State::Pending(op) => Some(op.clone()),
            _ => None,
        }
    };
    // Later outputs first: for `(loss, grads…)` from a backward pass, the last layers' gradients
    // come last in the list but are ready first, and finishing them before walking further
    // down keeps only one layer's (recomputed) activations alive at a time.
    for out in outputs.iter().rev() {
        let Some(root) = pending_op(&out.0) else { continue };
        if !visited.insert(Arc::as_ptr(&root)) {
            continue;
        }
        stack.push((root, 0));
        while let Some((op, i)) = stack.last_mut() {
            if *i < op.inputs.len() {
                let input = op.inputs[*i].clone();
                *i += 1;
                if let Some(child) = pending_op(&input.0) {
                    if visited.insert(Arc::as_ptr(&child)) {
                        stack.push((child, 0));
                    }
                }
            } else {
                let (op, _) = stack.pop().unwrap();
                mark_scheduled(&op);
                order.push(op);
            }
        }
    }
    order
}

fn mark_scheduled(op: &Arc<Op>) {
    for w in op.outputs.get().into_iter().flatten() {
        if let Some(node) = w.upgrade() {
            let mut st = node.lock();
            if let State::Pending(o) = &*st {
                let o = o.clone();
                *st = State::Scheduled(o);
            }
        }
    }
}

/// Waits (if needed) for an input computed elsewhere and returns its data.
fn input_data(a: &Array) -> Result<Data> {
    loop {
        {
            let st = a.0.lock();
            match &*st {
                State::Ready(d) => return Ok(d.clone()),
                State::Failed(e) => return Err(e.clone()),
                State::Pending(_) => {
                    // Not submitted by anyone: cannot happen for inputs of a scheduled op, but
                    // evaluate it rather than hang.
                    drop(st);
                    async_eval(&[a]);
                }
                State::Scheduled(_) => {}
            }
        }
        wait_until(&[&a.0], || !matches!(*a.0.lock(), State::Scheduled(_) | State::Pending(_)));
    }
}

/// Buffer donation (MLX's): when this op holds the only handle to its first input and that
/// input's buffer has no other owner (no views, no user handle), the node gives its data up so
/// the kernel can write into it (`inputs[0]` then holds the only reference). A KV cache's
/// `slice_update` then costs the new rows instead of a copy of the whole cache.
fn donate_first_input(op: &Arc<Op>, inputs: &mut [Data]) {
    let Some(first) = op.inputs.first() else { return };
    if Arc::strong_count(&first.0) != 1 || first.0.tape().is_some() {
        return;
    }
    let mut st = first.0.lock();
    if let State::Ready(d) = &*st {
        // Our clone in `inputs[0]` plus the node's own.
        if Arc::strong_count(&d.buffer) == 2 && !d.buffer.is_mapped() {
            *st = State::Failed(Error::runtime("internal: this array's buffer was donated to the op that consumed it"));
            drop(st);
            debug_assert_eq!(Arc::strong_count(&inputs[0].buffer), 1);
        }
    }
}

/// Runs a CPU task's ops in order on a pool thread while the pool's other threads stay awake to
/// take their share of each op's parallel loops. An idle rayon worker falls asleep within
/// microseconds and waking it costs ~70 µs on a KVM guest (a 2 × 33 µs parallel loop took 113 µs
/// after a 50 µs pause, 34 µs with a spinning helper), so without helpers every parallel op of a
/// training step ran its second half late or on the first thread. Each helper spins on
/// `rayon::yield_now` (running any work the ops' loops offer) until the task is done;
/// `OXMX_POOL_SPIN=0` lets them sleep.
fn run_in_pool(ops: Vec<Arc<Op>>) {
    let helpers = if ops.len() > 1 && pool_spin() { rayon::current_num_threads().saturating_sub(1) } else { 0 };
    let done = AtomicBool::new(false);
    let runner = AtomicUsize::new(usize::MAX);
    let (done, runner) = (&done, &runner);
    rayon::scope(move |s| {
        runner.store(rayon::current_thread_index().unwrap_or(usize::MAX), Ordering::Relaxed);
        for _ in 0..helpers {
            s.spawn(move |s| help_pool(s, done, runner));
        }
        ops.into_iter().for_each(run_op);
        done.store(true, Ordering::Release);
    });
}

/// A helper of `run_in_pool`: runs pool work as it appears until `done`. The thread running the
/// ops may pick a helper job up itself while it waits inside a parallel loop; it hands the job
/// back (spinning there would never return to the ops).
fn help_pool<'s>(s: &rayon::Scope<'s>, done: &'s AtomicBool, runner: &'s AtomicUsize) {
    if rayon::current_thread_index() == Some(runner.load(Ordering::Relaxed)) {
        if !done.load(Ordering::Acquire) {
            s.spawn(move |s| help_pool(s, done, runner));
        }
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

/// Whether `run_in_pool` keeps helpers spinning (`OXMX_POOL_SPIN=0`: no).
fn pool_spin() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_POOL_SPIN").map_or(true, |v| v != "0"))
}

/// Runs a task's ops in order on this thread; a device that batches their launches (CUDA
/// graphs) gets told where the task and each op end. If batched work could not be launched, it
/// never ran: the task's outputs become that error instead of garbage.
fn run_in_order(ops: Vec<Arc<Op>>) {
    let Some(stream) = ops.first().map(|op| op.stream) else { return };
    if !backend::begin_batch(stream, ops.len()) {
        ops.into_iter().for_each(run_op);
        return;
    }
    let mut outputs: Vec<std::sync::Weak<Node>> = Vec::new();
    for op in ops {
        outputs.extend(op.outputs.get().into_iter().flatten().cloned());
        run_op(op);
        backend::after_op(stream);
    }
    if let Err(e) = backend::end_batch(stream) {
        for n in outputs.iter().filter_map(|w| w.upgrade()) {
            *n.lock() = State::Failed(e.clone());
        }
        notify_all();
    }
}

/// Runs one op and publishes its outputs. The worker gives up everything it holds (the op, and
/// through it the inputs; its handles on the outputs) before or while the results become
/// visible, never after: when `eval` returns, no buffer the evaluation no longer needs is still
/// waiting to be freed by a worker thread, so `active_memory()` read right after `eval` is what
/// the caller's arrays hold. (Workers used to drop the op after waking the waiter; the late frees
/// landed inside the caller's next measurement, and a buffer a caller dropped could linger.)
fn run_op(op: Arc<Op>) {
    let outputs: Vec<std::sync::Weak<Node>> = op.outputs.get().cloned().unwrap_or_default();
    // Nobody holds any output any more: skip it, unless it talks to other ranks (they wait for
    // this rank's part whether or not anyone here reads the result).
    if outputs.iter().all(|w| w.strong_count() == 0) && !matches!(op.prim, crate::primitives::Primitive::Distributed(_)) {
        return;
    }
    let result = (|| -> Result<Vec<Data>> {
        let mut inputs = op.inputs.iter().map(input_data).collect::<Result<Vec<_>>>()?;
        if op.prim.donates_input() && outputs.iter().all(|w| w.upgrade().is_none_or(|n| n.tape().is_none())) {
            donate_first_input(&op, &mut inputs);
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend::eval(&op.prim, op.stream, &mut inputs, &op.specs)));
        match run {
            Ok(r) => r,
            Err(p) => {
                let msg =
                    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                Err(Error::runtime(format!("[{}] internal error in the kernel: {msg}", op.prim.name())))
            }
        }
    })();
    // The outputs' `Scheduled` states now hold the op's last references: replacing the last of
    // them (under its node's lock) frees the inputs nobody else holds before the result shows.
    drop(op);
    let states: Vec<State> = match result {
        Ok(datas) => datas.into_iter().map(State::Ready).collect(),
        Err(e) => outputs.iter().map(|_| State::Failed(e.clone())).collect(),
    };
    let mut waited = false;
    // A result whose node is gone is dropped here too, before anyone is woken.
    for (w, state) in outputs.iter().zip(states) {
        let Some(node) = w.upgrade() else { continue };
        *node.lock() = state;
        // Pairs with the fence in `wait_until`: either we see its flag, or it sees the state.
        fence(Ordering::SeqCst);
        waited |= node.waited.load(Ordering::SeqCst);
        // Dropped here, before anyone is woken: a waiter that already returned and let go of
        // this output leaves its buffer to be freed now, not inside its next measurement.
        drop(node);
    }
    if waited {
        notify_all();
    }
}
