//! matmul ops (see primitives/matmul.rs).
