//! DLPack export (`np.from_dlpack(a)`, `torch.from_dlpack(a)`): `a.__dlpack__()` returns a
//! "dltensor" capsule over a row-major host copy of the data, `a.__dlpack_device__()` is
//! `(kDLCPU, 0)`. The legacy (unversioned) capsule is what MLX hands out too.

use crate::array::PyArray;
use crate::convert::raw_bytes;
use oxmx_core::Dtype;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_void, CStr};

#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// What the managed tensor points into; freed by the deleter.
struct Holder {
    bytes: Vec<u8>,
    shape: Vec<i64>,
}

const KDL_CPU: i32 = 1;
const NAME: &CStr = c"dltensor";
const USED_NAME: &CStr = c"used_dltensor";

fn dl_dtype(d: Dtype) -> DLDataType {
    let (code, bits) = match d {
        Dtype::Bool => (6, 8),
        Dtype::Uint8 => (1, 8),
        Dtype::Uint16 => (1, 16),
        Dtype::Uint32 => (1, 32),
        Dtype::Uint64 => (1, 64),
        Dtype::Int8 => (0, 8),
        Dtype::Int16 => (0, 16),
        Dtype::Int32 => (0, 32),
        Dtype::Int64 => (0, 64),
        Dtype::Float16 => (2, 16),
        Dtype::Float32 => (2, 32),
        Dtype::Float64 => (2, 64),
        Dtype::Bfloat16 => (4, 16),
        Dtype::Complex64 => (5, 64),
    };
    DLDataType { code, bits, lanes: 1 }
}

unsafe extern "C" fn delete_managed(m: *mut DLManagedTensor) {
    if m.is_null() {
        return;
    }
    // SAFETY: `m` and its `manager_ctx` were made by Box::into_raw in `__dlpack__` and the
    // consumer calls the deleter exactly once.
    unsafe {
        let m = Box::from_raw(m);
        if !m.manager_ctx.is_null() {
            drop(Box::from_raw(m.manager_ctx as *mut Holder));
        }
    }
}

/// The capsule's destructor: frees the tensor unless a consumer took it (and renamed the
/// capsule "used_dltensor", taking over the deleter call).
unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with the capsule being destroyed.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, USED_NAME.as_ptr()) == 1 {
            return;
        }
        let p = ffi::PyCapsule_GetPointer(capsule, NAME.as_ptr()) as *mut DLManagedTensor;
        if p.is_null() {
            ffi::PyErr_Clear();
            return;
        }
        delete_managed(p);
    }
}

#[pymethods]
impl PyArray {
    /// A DLPack capsule of a host copy of the array (row-major).
    #[pyo3(signature = (stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<&Bound<'py, PyAny>>,
        dl_device: Option<&Bound<'py, PyAny>>,
        copy: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (stream, max_version, copy);
        if let Some(d) = dl_device.filter(|d| !d.is_none()) {
            let (kind, _): (i32, i32) = d.extract()?;
            if kind != KDL_CPU {
                return Err(PyBufferError::new_err(format!("[__dlpack__] oxmx exports host (kDLCPU) memory only, not device type {kind}")));
            }
        }
        let a = &self.a;
        a.check().map_err(crate::convert::to_pyerr)?;
        let (bytes, _) = raw_bytes(a)?;
        let shape: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
        if shape.len() > i32::MAX as usize {
            return Err(PyValueError::new_err("[__dlpack__] too many dimensions"));
        }
        let mut holder = Box::new(Holder { bytes, shape });
        let data = if holder.bytes.is_empty() {
            std::ptr::NonNull::<u64>::dangling().as_ptr() as *mut c_void
        } else {
            holder.bytes.as_mut_ptr() as *mut c_void
        };
        let tensor = DLTensor {
            data,
            device: DLDevice { device_type: KDL_CPU, device_id: 0 },
            ndim: holder.shape.len() as i32,
            dtype: dl_dtype(a.dtype()),
            shape: holder.shape.as_mut_ptr(),
            strides: std::ptr::null_mut(),
            byte_offset: 0,
        };
        let managed = Box::new(DLManagedTensor {
            dl_tensor: tensor,
            manager_ctx: Box::into_raw(holder) as *mut c_void,
            deleter: Some(delete_managed),
        });
        let raw = Box::into_raw(managed);
        // SAFETY: `raw` is a valid DLManagedTensor owned by the capsule until a consumer takes it.
        unsafe {
            let cap = ffi::PyCapsule_New(raw as *mut c_void, NAME.as_ptr(), Some(capsule_destructor));
            if cap.is_null() {
                delete_managed(raw);
                return Err(PyErr::fetch(py));
            }
            Ok(Bound::from_owned_ptr(py, cap))
        }
    }

    /// `(device type, device id)`: always the host, `(1, 0)`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (KDL_CPU, 0)
    }
}
