//! `linalg` namespace (mx.linalg).
