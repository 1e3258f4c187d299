//! index ops (see primitives/index.rs).
