//! Streams: ordered queues of work on a device. Each CPU stream has its own worker thread, so
//! streams run concurrently; dependencies across streams are waited on inside the worker.

use crate::device::{default_device, Device};
use std::cell::Cell;
use std::sync::{Mutex, OnceLock};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    pub index: usize,
    pub device: Device,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dev = match self.device {
            Device::Cpu => "cpu".to_string(),
            Device::Gpu(n) => format!("gpu, {n}"),
        };
        write!(f, "Stream(Device({dev}), {})", self.index)
    }
}

struct Registry {
    streams: Vec<Stream>,
    defaults: Vec<(Device, Stream)>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry { streams: vec![], defaults: vec![] }))
}

/// Creates a new stream on `device`.
pub fn new_stream(device: Device) -> Stream {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    let s = Stream { index: r.streams.len(), device };
    r.streams.push(s);
    s
}

/// The process-wide default stream of `device` (created on first use).
pub fn default_stream_of(device: Device) -> Stream {
    {
        let r = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = r.defaults.iter().find(|(d, _)| *d == device) {
            return *s;
        }
    }
    let s = new_stream(device);
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, existing)) = r.defaults.iter().find(|(d, _)| *d == device) {
        return *existing;
    }
    r.defaults.push((device, s));
    s
}

thread_local! {
    static STREAM_OVERRIDE: Cell<Option<Stream>> = const { Cell::new(None) };
}

/// The stream new ops go to: the one set by `with_stream`, else the default device's default.
pub fn default_stream() -> Stream {
    STREAM_OVERRIDE.with(|s| s.get()).unwrap_or_else(|| default_stream_of(default_device()))
}

/// Runs `f` with new ops placed on `stream` (Python: the `stream=` argument).
pub fn with_stream<R>(stream: Stream, f: impl FnOnce() -> R) -> R {
    let old = STREAM_OVERRIDE.with(|s| s.replace(Some(stream)));
    struct Restore(Option<Stream>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STREAM_OVERRIDE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(old);
    f()
}

pub(crate) fn without_stream_override<R>(f: impl FnOnce() -> R) -> R {
    let old = STREAM_OVERRIDE.with(|s| s.replace(None));
    let r = f();
    STREAM_OVERRIDE.with(|s| s.set(old));
    r
}

/// Blocks until all work submitted to `stream` has finished.
pub fn synchronize(stream: Stream) {
    crate::graph::scheduler::synchronize(stream);
    if let crate::device::Device::Gpu(n) = stream.device {
        // Kernels are queued asynchronously: wait for the device too.
        let _ = crate::backend::cuda::synchronize(n);
    }
}

/// Blocks until all work on every stream has finished.
pub fn synchronize_all() {
    let streams: Vec<Stream> = registry().lock().unwrap_or_else(|p| p.into_inner()).streams.clone();
    for s in streams {
        synchronize(s);
    }
}
