//! `fft` namespace (mx.fft).
