//! The MPI backend for CPUs: Open MPI (Debian's `openmpi-bin` / `libopenmpi-dev`), loaded at run
//! time with `dlopen`, so oxmx builds and runs without MPI and only `init("mpi")` needs it.
//!
//! Why not the `mpi` crate: it generates its bindings with bindgen against the installed
//! headers at build time (libclang and MPI on every build machine, CI included). The dozen
//! calls used here are stable C ABI; Open MPI's handles (`MPI_COMM_WORLD`, `MPI_FLOAT`,
//! `MPI_SUM`, …) are the addresses of exported globals (`ompi_mpi_comm_world`, …), which
//! `dlsym` hands back directly. MPICH-family libraries use integer handles instead and are not
//! supported (the error says so).

use super::backend::Communicator;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::primitives::distributed::CollectiveReduce;
use half::{bf16, f16};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

type Handle = *mut c_void;
type UserFn = unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int, *mut Handle);

const MPI_SUCCESS: c_int = 0;
const MPI_THREAD_MULTIPLE: c_int = 3;
/// Largest element count per call (MPI counts are `int`).
const MAX_COUNT: usize = 1 << 30;

/// The loaded library and the entry points used.
struct Mpi {
    _lib: libloading::Library,
    init_thread: unsafe extern "C" fn(*mut c_int, *mut *mut *mut c_char, c_int, *mut c_int) -> c_int,
    initialized: unsafe extern "C" fn(*mut c_int) -> c_int,
    finalized: unsafe extern "C" fn(*mut c_int) -> c_int,
    finalize: unsafe extern "C" fn() -> c_int,
    comm_rank: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    comm_size: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    comm_split: unsafe extern "C" fn(Handle, c_int, c_int, *mut Handle) -> c_int,
    comm_set_errhandler: unsafe extern "C" fn(Handle, Handle) -> c_int,
    allreduce: unsafe extern "C" fn(*const c_void, *mut c_void, c_int, Handle, Handle, Handle) -> c_int,
    allgather: unsafe extern "C" fn(*const c_void, c_int, Handle, *mut c_void, c_int, Handle, Handle) -> c_int,
    reduce_scatter_block: unsafe extern "C" fn(*const c_void, *mut c_void, c_int, Handle, Handle, Handle) -> c_int,
    send: unsafe extern "C" fn(*const c_void, c_int, Handle, c_int, c_int, Handle) -> c_int,
    recv: unsafe extern "C" fn(*mut c_void, c_int, Handle, c_int, c_int, Handle, *mut c_void) -> c_int,
    type_contiguous: unsafe extern "C" fn(c_int, Handle, *mut Handle) -> c_int,
    type_commit: unsafe extern "C" fn(*mut Handle) -> c_int,
    op_create: unsafe extern "C" fn(UserFn, c_int, *mut Handle) -> c_int,
    error_string: unsafe extern "C" fn(c_int, *mut c_char, *mut c_int) -> c_int,
    comm_world: Handle,
    errors_return: Handle,
    types: Types,
    ops: Ops,
}

// The handles are process-global MPI objects; MPI is initialised with MPI_THREAD_MULTIPLE.
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

struct Types {
    byte: Handle,
    c_bool: Handle,
    i8: Handle,
    u8: Handle,
    i16: Handle,
    u16: Handle,
    i32: Handle,
    u32: Handle,
    i64: Handle,
    u64: Handle,
    f32: Handle,
    f64: Handle,
    c64: Handle,
    /// Two opaque bytes: float16 and bfloat16 travel as this with the user ops below.
    half: Handle,
}

struct Ops {
    sum: Handle,
    max: Handle,
    min: Handle,
    lor: Handle,
    land: Handle,
    /// [sum, max, min] for float16, then bfloat16 (MPI has no 16-bit float type).
    f16: [Handle; 3],
    bf16: [Handle; 3],
}

/// Candidate library names: Debian's Open MPI, then whatever `libmpi.so` the loader finds.
const LIBRARIES: &[&str] = &["libmpi.so.40", "libmpi.so"];

fn load() -> Result<Mpi> {
    let mut why = Vec::new();
    for name in LIBRARIES {
        // RTLD_GLOBAL: Open MPI's plug-ins (loaded later by libmpi itself) resolve libmpi's
        // symbols from the global namespace.
        // SAFETY: loading a shared library runs its initialisers; libmpi's are benign.
        let lib = unsafe { libloading::os::unix::Library::open(Some(*name), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        match lib {
            Ok(lib) => return bind(lib.into()),
            Err(e) => why.push(format!("{name}: {e}")),
        }
    }
    Err(Error::runtime(format!(
        "[distributed] the MPI backend needs Open MPI's library, which could not be loaded ({}). Install it (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) and start the ranks with `oxmx launch --backend mpi` or mpirun.",
        why.join("; ")
    )))
}

fn bind(lib: libloading::Library) -> Result<Mpi> {
    // SAFETY: the symbol types match Open MPI's C declarations (mpi.h, MPI-3).
    unsafe {
        macro_rules! f {
            ($name:literal) => {
                *lib.get($name.as_bytes())
                    .map_err(|e| Error::runtime(format!("[distributed] {} is not in the loaded MPI library: {e}", $name)))?
            };
        }
        let global = |name: &str| -> Result<Handle> {
            let s: libloading::Symbol<*mut c_void> = lib.get(name.as_bytes()).map_err(|_| {
                Error::runtime(format!(
                    "[distributed] the loaded MPI library does not export {name}: only Open MPI is supported (MPICH-family libraries use integer handles)"
                ))
            })?;
            Ok(*s)
        };
        let types = Types {
            byte: global("ompi_mpi_byte")?,
            c_bool: global("ompi_mpi_c_bool")?,
            i8: global("ompi_mpi_int8_t")?,
            u8: global("ompi_mpi_uint8_t")?,
            i16: global("ompi_mpi_int16_t")?,
            u16: global("ompi_mpi_uint16_t")?,
            i32: global("ompi_mpi_int32_t")?,
            u32: global("ompi_mpi_uint32_t")?,
            i64: global("ompi_mpi_int64_t")?,
            u64: global("ompi_mpi_uint64_t")?,
            f32: global("ompi_mpi_float")?,
            f64: global("ompi_mpi_double")?,
            c64: global("ompi_mpi_c_float_complex")?,
            half: std::ptr::null_mut(),
        };
        let ops = Ops {
            sum: global("ompi_mpi_op_sum")?,
            max: global("ompi_mpi_op_max")?,
            min: global("ompi_mpi_op_min")?,
            lor: global("ompi_mpi_op_lor")?,
            land: global("ompi_mpi_op_land")?,
            f16: [std::ptr::null_mut(); 3],
            bf16: [std::ptr::null_mut(); 3],
        };
        Ok(Mpi {
            init_thread: f!("MPI_Init_thread"),
            initialized: f!("MPI_Initialized"),
            finalized: f!("MPI_Finalized"),
            finalize: f!("MPI_Finalize"),
            comm_rank: f!("MPI_Comm_rank"),
            comm_size: f!("MPI_Comm_size"),
            comm_split: f!("MPI_Comm_split"),
            comm_set_errhandler: f!("MPI_Comm_set_errhandler"),
            allreduce: f!("MPI_Allreduce"),
            allgather: f!("MPI_Allgather"),
            reduce_scatter_block: f!("MPI_Reduce_scatter_block"),
            send: f!("MPI_Send"),
            recv: f!("MPI_Recv"),
            type_contiguous: f!("MPI_Type_contiguous"),
            type_commit: f!("MPI_Type_commit"),
            op_create: f!("MPI_Op_create"),
            error_string: f!("MPI_Error_string"),
            comm_world: global("ompi_mpi_comm_world")?,
            errors_return: global("ompi_mpi_errors_return")?,
            types,
            ops,
            _lib: lib,
        })
    }
}

impl Mpi {
    fn check(&self, what: &str, code: c_int) -> Result<()> {
        if code == MPI_SUCCESS {
            return Ok(());
        }
        let mut buf = vec![0 as c_char; 512];
        let mut len: c_int = 0;
        // SAFETY: MPI_MAX_ERROR_STRING is 256 in Open MPI; the buffer is larger.
        let msg = unsafe {
            if (self.error_string)(code, buf.as_mut_ptr(), &mut len) == MPI_SUCCESS {
                let bytes: Vec<u8> = buf[..len.max(0) as usize].iter().map(|&c| c as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                format!("error code {code}")
            }
        };
        Err(Error::runtime(format!("[distributed] MPI {what} failed: {msg}")))
    }

    /// Initialises MPI once per process (thread-multiple: oxmx's stream threads call MPI) and
    /// creates the 16-bit float datatype and reductions.
    fn start(&mut self) -> Result<()> {
        // SAFETY: plain MPI calls with valid out-pointers.
        unsafe {
            let mut flag = 0;
            self.check("MPI_Initialized", (self.initialized)(&mut flag))?;
            if flag == 0 {
                let mut provided = 0;
                self.check(
                    "MPI_Init_thread",
                    (self.init_thread)(std::ptr::null_mut(), std::ptr::null_mut(), MPI_THREAD_MULTIPLE, &mut provided),
                )?;
                if provided < MPI_THREAD_MULTIPLE {
                    return Err(Error::runtime(format!(
                        "[distributed] this MPI library gives thread level {provided}, oxmx needs MPI_THREAD_MULTIPLE (3)"
                    )));
                }
                // Finalise at exit: mpirun reports ranks that exit without it as failures.
                libc::atexit(finalize_at_exit);
            }
            // Errors come back as codes (turned into oxmx errors) instead of aborting the job.
            self.check("MPI_Comm_set_errhandler", (self.comm_set_errhandler)(self.comm_world, self.errors_return))?;
            let mut half = std::ptr::null_mut();
            self.check("MPI_Type_contiguous", (self.type_contiguous)(2, self.types.byte, &mut half))?;
            self.check("MPI_Type_commit", (self.type_commit)(&mut half))?;
            self.types.half = half;
            let fns16: [UserFn; 3] = [reduce_op::<f16, SumK>, reduce_op::<f16, MaxK>, reduce_op::<f16, MinK>];
            let fnsb: [UserFn; 3] = [reduce_op::<bf16, SumK>, reduce_op::<bf16, MaxK>, reduce_op::<bf16, MinK>];
            for i in 0..3 {
                let (mut a, mut b) = (std::ptr::null_mut(), std::ptr::null_mut());
                self.check("MPI_Op_create", (self.op_create)(fns16[i], 1, &mut a))?;
                self.check("MPI_Op_create", (self.op_create)(fnsb[i], 1, &mut b))?;
                (self.ops.f16[i], self.ops.bf16[i]) = (a, b);
            }
        }
        Ok(())
    }

    fn datatype(&self, dtype: Dtype) -> Handle {
        let t = &self.types;
        match dtype {
            Dtype::Bool => t.c_bool,
            Dtype::Uint8 => t.u8,
            Dtype::Uint16 => t.u16,
            Dtype::Uint32 => t.u32,
            Dtype::Uint64 => t.u64,
            Dtype::Int8 => t.i8,
            Dtype::Int16 => t.i16,
            Dtype::Int32 => t.i32,
            Dtype::Int64 => t.i64,
            Dtype::Float16 | Dtype::Bfloat16 => t.half,
            Dtype::Float32 => t.f32,
            Dtype::Float64 => t.f64,
            Dtype::Complex64 => t.c64,
        }
    }

    /// The MPI reduction for `kind` over `dtype`. Booleans: a sum is a logical or (as adding
    /// booleans is in oxmx), max is or, min is and.
    fn op(&self, kind: CollectiveReduce, dtype: Dtype) -> Result<Handle> {
        let o = &self.ops;
        let i = match kind {
            CollectiveReduce::Sum => 0,
            CollectiveReduce::Max => 1,
            CollectiveReduce::Min => 2,
        };
        Ok(match dtype {
            Dtype::Float16 => o.f16[i],
            Dtype::Bfloat16 => o.bf16[i],
            Dtype::Bool => [o.lor, o.lor, o.land][i],
            Dtype::Complex64 if kind != CollectiveReduce::Sum => {
                return Err(Error::invalid(format!("[distributed] all_{kind:?} is not defined for complex64").to_lowercase()))
            }
            _ => [o.sum, o.max, o.min][i],
        })
    }
}

extern "C" fn finalize_at_exit() {
    // Queued sends finish first (a receiver may still be waiting for them); bounded, in case a
    // peer is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while PENDING_SENDS.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if let Some(Ok(m)) = MPI.get() {
        // SAFETY: MPI calls at process exit, once.
        unsafe {
            let mut done = 0;
            if (m.finalized)(&mut done) == MPI_SUCCESS && done == 0 {
                (m.finalize)();
            }
        }
    }
}

static MPI: OnceLock<Result<Mpi>> = OnceLock::new();

fn mpi() -> Result<&'static Mpi> {
    MPI.get_or_init(|| {
        let mut m = load()?;
        m.start()?;
        Ok(m)
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// Whether Open MPI's library can be loaded (does not initialise MPI).
pub(crate) fn library_present() -> bool {
    LIBRARIES.iter().any(|name| {
        // SAFETY: only opens (and closes) the library.
        unsafe { libloading::os::unix::Library::open(Some(*name), libc::RTLD_LAZY | libc::RTLD_GLOBAL).is_ok() }
    })
}

/// Whether this process was started by an MPI launcher (mpirun / `oxmx launch --backend mpi`).
pub(crate) fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].iter().any(|v| std::env::var_os(v).is_some())
}

trait Kind {
    fn apply<T: PartialOrd + Copy + std::ops::Add<Output = T>>(a: T, b: T) -> T;
}
struct SumK;
struct MaxK;
struct MinK;
impl Kind for SumK {
    fn apply<T: PartialOrd + Copy + std::ops::Add<Output = T>>(a: T, b: T) -> T {
        a + b
    }
}
impl Kind for MaxK {
    fn apply<T: PartialOrd + Copy + std::ops::Add<Output = T>>(a: T, b: T) -> T {
        // NaN wins, as in oxmx's max.
        if a.partial_cmp(&b).is_none() {
            if a != a {
                a
            } else {
                b
            }
        } else if b > a {
            b
        } else {
            a
        }
    }
}
impl Kind for MinK {
    fn apply<T: PartialOrd + Copy + std::ops::Add<Output = T>>(a: T, b: T) -> T {
        if a.partial_cmp(&b).is_none() {
            if a != a {
                a
            } else {
                b
            }
        } else if b < a {
            b
        } else {
            a
        }
    }
}

/// An MPI user reduction: `inout[i] = op(in[i], inout[i])` over 16-bit floats.
unsafe extern "C" fn reduce_op<T: PartialOrd + Copy + std::ops::Add<Output = T>, K: Kind>(
    input: *mut c_void,
    inout: *mut c_void,
    len: *mut c_int,
    _dtype: *mut Handle,
) {
    let n = *len as usize;
    let a = std::slice::from_raw_parts(input as *const T, n);
    let b = std::slice::from_raw_parts_mut(inout as *mut T, n);
    for (y, &x) in b.iter_mut().zip(a) {
        *y = K::apply(x, *y);
    }
}

/// One MPI communicator (the world, or a split of it).
pub(crate) struct MpiComm {
    comm: Handle,
    rank: usize,
    size: usize,
    sends: OnceLock<SendQueue>,
}

/// Sends run on one thread per communicator, in the order they were evaluated, so a send never
/// blocks its stream: `eval(send, recv)` around a ring cannot deadlock whichever of the two the
/// stream runs first, even for messages too large for MPI's eager protocol. A failed send is
/// reported by the next operation on the communicator.
struct SendQueue {
    tx: Mutex<mpsc::Sender<(Vec<u8>, Dtype, usize)>>,
    failed: Arc<Mutex<Option<Error>>>,
}

/// Sends queued but not yet completed, over all communicators (waited for before MPI_Finalize).
static PENDING_SENDS: AtomicUsize = AtomicUsize::new(0);

unsafe impl Send for MpiComm {}
unsafe impl Sync for MpiComm {}

impl MpiComm {
    /// The world communicator (initialises MPI on first use).
    pub(crate) fn world() -> Result<Arc<dyn Communicator>> {
        let m = mpi()?;
        Ok(Arc::new(MpiComm::wrap(m, m.comm_world)?))
    }

    fn wrap(m: &Mpi, comm: Handle) -> Result<MpiComm> {
        let (mut rank, mut size) = (0, 0);
        // SAFETY: valid communicator and out-pointers.
        unsafe {
            m.check("MPI_Comm_rank", (m.comm_rank)(comm, &mut rank))?;
            m.check("MPI_Comm_size", (m.comm_size)(comm, &mut size))?;
        }
        Ok(MpiComm { comm, rank: rank as usize, size: size as usize, sends: OnceLock::new() })
    }

    fn queue(&self) -> &SendQueue {
        self.sends.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<(Vec<u8>, Dtype, usize)>();
            let failed = Arc::new(Mutex::new(None));
            let (comm, sink) = (self.comm as usize, failed.clone());
            let spawned = std::thread::Builder::new().name("oxmx-mpi-send".into()).spawn(move || {
                for (bytes, dtype, dst) in rx {
                    let r = blocking_send(comm as Handle, dtype, &bytes, dst);
                    if let Err(e) = r {
                        sink.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                    PENDING_SENDS.fetch_sub(1, Ordering::SeqCst);
                }
            });
            if let Err(e) = spawned {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Error::runtime(format!("[distributed] starting the MPI send thread: {e}")));
            }
            SendQueue { tx: Mutex::new(tx), failed }
        })
    }

    /// The error of an earlier (queued) send, once.
    fn earlier_failure(&self) -> Result<()> {
        match self.sends.get().and_then(|q| q.failed.lock().unwrap_or_else(|p| p.into_inner()).take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn blocking_send(comm: Handle, dtype: Dtype, input: &[u8], dst: usize) -> Result<()> {
    let m = mpi()?;
    let n = count(input.len(), dtype)?;
    // SAFETY: input holds n elements.
    unsafe { m.check("MPI_Send", (m.send)(input.as_ptr().cast(), n, m.datatype(dtype), dst as c_int, 0, comm)) }
}

fn count(bytes: usize, dtype: Dtype) -> Result<c_int> {
    let n = bytes / dtype.size();
    if n > MAX_COUNT {
        return Err(Error::invalid(format!(
            "[distributed] {n} elements in one MPI message is more than MPI's int count allows; split the array"
        )));
    }
    Ok(n as c_int)
}

impl Communicator for MpiComm {
    fn backend(&self) -> &'static str {
        "mpi"
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }

    fn split(&self, color: i32, key: i32) -> Result<Arc<dyn Communicator>> {
        let m = mpi()?;
        let mut out = std::ptr::null_mut();
        // SAFETY: valid communicator and out-pointer.
        unsafe { m.check("MPI_Comm_split", (m.comm_split)(self.comm, color, key, &mut out))? };
        Ok(Arc::new(MpiComm::wrap(m, out)?))
    }

    fn all_reduce(&self, kind: CollectiveReduce, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        self.earlier_failure()?;
        let m = mpi()?;
        let (t, op) = (m.datatype(dtype), m.op(kind, dtype)?);
        // Large arrays go in pieces of at most MAX_COUNT elements.
        let step = MAX_COUNT * dtype.size();
        for (src, dst) in input.chunks(step).zip(output.chunks_mut(step)) {
            let n = count(src.len(), dtype)?;
            // SAFETY: both buffers hold `n` elements of `dtype`.
            unsafe {
                m.check("MPI_Allreduce", (m.allreduce)(src.as_ptr().cast(), dst.as_mut_ptr().cast(), n, t, op, self.comm))?;
            }
        }
        Ok(())
    }

    fn all_gather(&self, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        self.earlier_failure()?;
        let m = mpi()?;
        let t = m.datatype(dtype);
        let n = count(input.len(), dtype)?;
        // SAFETY: output holds size × n elements.
        unsafe { m.check("MPI_Allgather", (m.allgather)(input.as_ptr().cast(), n, t, output.as_mut_ptr().cast(), n, t, self.comm)) }
    }

    fn reduce_scatter(&self, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        self.earlier_failure()?;
        let m = mpi()?;
        let (t, op) = (m.datatype(dtype), m.op(CollectiveReduce::Sum, dtype)?);
        let n = count(output.len(), dtype)?;
        // SAFETY: input holds size × n elements, output n.
        unsafe {
            m.check(
                "MPI_Reduce_scatter_block",
                (m.reduce_scatter_block)(input.as_ptr().cast(), output.as_mut_ptr().cast(), n, t, op, self.comm),
            )
        }
    }

    fn send(&self, dtype: Dtype, input: &[u8], dst: usize) -> Result<()> {
        self.earlier_failure()?;
        let q = self.queue();
        PENDING_SENDS.fetch_add(1, Ordering::SeqCst);
        let sent = q.tx.lock().unwrap_or_else(|p| p.into_inner()).send((input.to_vec(), dtype, dst));
        if sent.is_err() {
            PENDING_SENDS.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::runtime("[distributed] the MPI send thread is gone"));
        }
        Ok(())
    }

    fn recv(&self, dtype: Dtype, output: &mut [u8], src: usize) -> Result<()> {
        self.earlier_failure()?;
        let m = mpi()?;
        let n = count(output.len(), dtype)?;
        // SAFETY: output holds n elements; MPI_STATUS_IGNORE is NULL in Open MPI.
        unsafe {
            m.check(
                "MPI_Recv",
                (m.recv)(output.as_mut_ptr().cast(), n, m.datatype(dtype), src as c_int, 0, self.comm, std::ptr::null_mut()),
            )
        }
    }
}
