//! `random` namespace (mx.random).
