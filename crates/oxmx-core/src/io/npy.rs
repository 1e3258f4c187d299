//! npy reading and writing.
