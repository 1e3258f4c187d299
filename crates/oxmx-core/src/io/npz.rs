//! npz reading and writing.
