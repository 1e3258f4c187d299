//! Devices. Arrays do not belong to a device: the stream an op runs on decides where it runs.

use std::cell::Cell;
use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Gpu(usize),
}

impl Device {
    pub fn is_gpu(self) -> bool {
        matches!(self, Device::Gpu(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "Device(cpu, 0)"),
            Device::Gpu(n) => write!(f, "Device(gpu, {n})"),
        }
    }
}

/// Whether a GPU backend is available in this process: a CUDA driver that loads and at least
/// one device (`OXMX_DISABLE_GPU=1` hides them).
pub fn gpu_available() -> bool {
    crate::backend::cuda::available()
}

thread_local! {
    static DEFAULT_DEVICE: Cell<Option<Device>> = const { Cell::new(None) };
}

/// The thread's default device: the first GPU when one is available, else the CPU.
pub fn default_device() -> Device {
    DEFAULT_DEVICE.with(|d| d.get()).unwrap_or(if gpu_available() { Device::Gpu(0) } else { Device::Cpu })
}

/// Sets the thread's default device.
pub fn set_default_device(device: Device) {
    DEFAULT_DEVICE.with(|d| d.set(Some(device)));
}

/// Runs `f` with `device` as the thread's default device (and so its default stream).
pub fn with_device<R>(device: Device, f: impl FnOnce() -> R) -> R {
    let old = DEFAULT_DEVICE.with(|d| d.replace(Some(device)));
    struct Restore(Option<Device>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEFAULT_DEVICE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(old);
    crate::stream::without_stream_override(f)
}
