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

/// The thread's default device: the one set on this thread, else the process's: the device
/// named by `OXMX_DEFAULT_DEVICE` (`cpu`, `gpu`, `gpu:N`), else — when GPUs are available — the
/// GPU of this rank on its machine (`OXMX_LOCAL_RANK` or `OMPI_COMM_WORLD_LOCAL_RANK` modulo
/// the GPU count; the first GPU without a launcher), else the CPU.
pub fn default_device() -> Device {
    DEFAULT_DEVICE.with(|d| d.get()).unwrap_or_else(process_default)
}

fn process_default() -> Device {
    static D: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        let n = crate::backend::cuda::device_count();
        if let Ok(v) = std::env::var("OXMX_DEFAULT_DEVICE") {
            match parse_device(&v) {
                Some(Device::Gpu(i)) if i < n => return Device::Gpu(i),
                Some(Device::Cpu) => return Device::Cpu,
                // An unusable setting (no such GPU) falls through to the usual choice.
                _ => {}
            }
        }
        if n == 0 {
            return Device::Cpu;
        }
        let local = ["OXMX_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"]
            .iter()
            .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok()))
            .unwrap_or(0);
        Device::Gpu(local % n)
    })
}

/// `cpu`, `gpu` (the first GPU) or `gpu:N`.
pub fn parse_device(s: &str) -> Option<Device> {
    match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => Some(Device::Cpu),
        "gpu" | "cuda" => Some(Device::Gpu(0)),
        other => {
            let n = other.strip_prefix("gpu:").or_else(|| other.strip_prefix("cuda:"))?;
            n.parse().ok().map(Device::Gpu)
        }
    }
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
