//! conv ops (see primitives/conv.rs).
