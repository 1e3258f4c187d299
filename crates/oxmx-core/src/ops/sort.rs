//! sort ops (see primitives/sort.rs).
