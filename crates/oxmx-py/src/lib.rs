//! `oxmx._core`: the compiled part of the `oxmx` Python package. `oxmx.core` re-exports it (see
//! `python/oxmx/core/__init__.py`); all array logic is oxmx-core's, this crate only converts.

mod array;
mod convert;
mod custom;
mod distributed;
mod dlpack;
mod dtype;
mod funcs;
mod funcs_more;
mod lm;
mod sub;
mod transforms;

use pyo3::prelude::*;

// mimalloc for the Rust side, as the `oxmx` command: building each decoding step's graph allocates
// thousands of small nodes, and the system allocator is measurably slower at that (the Python
// interpreter keeps its own allocator; only this library's allocations change).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule(name = "_core")]
fn oxmx_core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<array::PyArray>()?;
    m.add_class::<array::PyArrayAt>()?;
    m.add_class::<array::PyArrayAtIdx>()?;
    m.add_class::<dtype::PyDtype>()?;
    m.add_class::<dtype::PyFinfo>()?;
    m.add_class::<dtype::PyIinfo>()?;
    for d in oxmx_core::dtype::ALL_DTYPES {
        m.add(dtype::attr_name(d), dtype::PyDtype { dt: d })?;
    }
    m.add_function(wrap_pyfunction!(dtype::_dtype_from_name, m)?)?;
    m.add_function(wrap_pyfunction!(array::_array_from_numpy, m)?)?;
    funcs::register_all(m)?;
    funcs_more::register(m)?;
    sub::register(m)?;
    distributed::register(m)?;
    transforms::register(m)?;
    custom::register(m)?;
    lm::register(m)?;
    Ok(())
}
