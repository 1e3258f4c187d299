//! `fft` namespace (mx.fft): discrete Fourier transforms and spectrum shifts.
//!
//! n-d transforms are built from one-axis primitives (see primitives/fft.rs): inputs are first
//! truncated or zero-padded to the requested sizes, then transformed axis by axis. As MLX, every
//! transform computes in single precision: real and float64 inputs give complex64 (or float32
//! from the inverse real transforms). Normalisation is MLX's default "backward" (inverse / n).

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::primitives::{FftOp, Primitive};
use crate::shape::normalize_axis;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Fft,
    Ifft,
    Rfft,
    Irfft,
}

/// Resolves `axes` (MLX's default: every axis, and an error when only `s` is given).
fn resolve_axes(a: &Array, s: Option<&[usize]>, axes: Option<&[isize]>, name: &str) -> Result<Vec<usize>> {
    let nd = a.ndim();
    let raw: Vec<isize> = match (axes, s) {
        (Some(ax), _) => ax.to_vec(),
        (None, None) => (0..nd as isize).collect(),
        (None, Some(_)) => crate::bail!("[{name}] `axes` should not be `None` if `s` is not `None`."),
    };
    let mut out = Vec::with_capacity(raw.len());
    for &ax in &raw {
        if ax < -(nd as isize) || ax >= nd as isize {
            crate::bail!("[{name}] Invalid axis {ax} for array with {nd} dimensions.");
        }
        let ax = normalize_axis(ax, nd, name)?;
        if out.contains(&ax) {
            crate::bail!("[{name}] Duplicated axis received {raw:?}");
        }
        out.push(ax);
    }
    Ok(out)
}

/// Truncates or zero-pads each of `axes` to the matching entry of `sizes`.
fn fit(x: &Array, axes: &[usize], sizes: &[usize]) -> Array {
    let shape = x.shape().to_vec();
    let mut stop: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    let mut widths = vec![(0usize, 0usize); shape.len()];
    let (mut cut, mut grow) = (false, false);
    for (&ax, &n) in axes.iter().zip(sizes) {
        if n < shape[ax] {
            stop[ax] = n as isize;
            cut = true;
        } else if n > shape[ax] {
            widths[ax].1 = n - shape[ax];
            grow = true;
        }
    }
    let mut y = x.clone();
    if cut {
        y = super::slice_range(&y, &vec![0; shape.len()], &stop);
    }
    if grow {
        y = super::pad_constant(&y, &widths, 0.0f32);
    }
    y
}

fn node(x: Array, op: FftOp) -> Array {
    Array::from_op(Primitive::Fft(op), vec![x])
}

fn transform(a: &Array, s: Option<&[usize]>, axes: Option<&[isize]>, kind: Kind, name: &str) -> Result<Array> {
    a.check()?;
    if a.ndim() == 0 {
        crate::bail!("[{name}] Requires an array with at least one dimension.");
    }
    let axes = resolve_axes(a, s, axes, name)?;
    if axes.is_empty() {
        return Ok(a.clone());
    }
    let mut sizes: Vec<usize> = match s {
        Some(s) if s.len() != axes.len() => crate::bail!("[{name}] Shape and axes have different sizes."),
        Some(s) => s.to_vec(),
        None => axes.iter().map(|&ax| a.shape()[ax]).collect(),
    };
    let last = axes.len() - 1;
    if kind == Kind::Irfft && s.is_none() {
        sizes[last] = 2 * sizes[last].saturating_sub(1);
    }
    if let Some(&n) = sizes.iter().find(|&&n| n == 0) {
        crate::bail!("[{name}] Invalid FFT output size requested ({n}).");
    }
    let x = match kind {
        Kind::Rfft if a.dtype().is_complex() => super::real(a).astype(Dtype::Float32),
        Kind::Rfft => a.astype(Dtype::Float32),
        _ => a.astype(Dtype::Complex64),
    };
    let mut fitted = sizes.clone();
    if kind == Kind::Irfft {
        fitted[last] = sizes[last] / 2 + 1;
    }
    let mut x = fit(&x, &axes, &fitted);
    match kind {
        Kind::Fft | Kind::Ifft => {
            for &axis in &axes {
                x = node(x, FftOp::Fft { axis, inverse: kind == Kind::Ifft });
            }
        }
        Kind::Rfft => {
            x = node(x, FftOp::Rfft { axis: axes[last] });
            for &axis in &axes[..last] {
                x = node(x, FftOp::Fft { axis, inverse: false });
            }
        }
        Kind::Irfft => {
            for &axis in &axes[..last] {
                x = node(x, FftOp::Fft { axis, inverse: true });
            }
            x = node(x, FftOp::Irfft { axis: axes[last], n: sizes[last] });
        }
    }
    Ok(x)
}

fn one_axis(a: &Array, n: Option<usize>, axis: isize, kind: Kind, name: &str) -> Result<Array> {
    let s = n.map(|n| vec![n]);
    transform(a, s.as_deref(), Some(&[axis]), kind, name)
}

/// One-dimensional DFT along `axis`, with the input truncated or zero-padded to `n` if given.
#[track_caller]
pub fn fft(a: &Array, n: Option<usize>, axis: isize) -> Array {
    Array::build(|| one_axis(a, n, axis, Kind::Fft, "fft"))
}

/// Inverse of [`fft`].
#[track_caller]
pub fn ifft(a: &Array, n: Option<usize>, axis: isize) -> Array {
    Array::build(|| one_axis(a, n, axis, Kind::Ifft, "ifft"))
}

/// DFT of a real signal: the `n/2 + 1` non-negative frequencies (complex inputs use their real part).
#[track_caller]
pub fn rfft(a: &Array, n: Option<usize>, axis: isize) -> Array {
    Array::build(|| one_axis(a, n, axis, Kind::Rfft, "rfft"))
}

/// Inverse of [`rfft`]: a real signal of length `n` (default `2 * (bins - 1)`).
#[track_caller]
pub fn irfft(a: &Array, n: Option<usize>, axis: isize) -> Array {
    Array::build(|| one_axis(a, n, axis, Kind::Irfft, "irfft"))
}

/// Two-dimensional DFT over `axes` (MLX's default `[-2, -1]`).
#[track_caller]
pub fn fft2(a: &Array, s: Option<&[usize]>, axes: &[isize]) -> Array {
    Array::build(|| transform(a, s, Some(axes), Kind::Fft, "fft2"))
}

/// Inverse of [`fft2`].
#[track_caller]
pub fn ifft2(a: &Array, s: Option<&[usize]>, axes: &[isize]) -> Array {
    Array::build(|| transform(a, s, Some(axes), Kind::Ifft, "ifft2"))
}

/// Two-dimensional real DFT; the last of `axes` holds the halved spectrum.
#[track_caller]
pub fn rfft2(a: &Array, s: Option<&[usize]>, axes: &[isize]) -> Array {
    Array::build(|| transform(a, s, Some(axes), Kind::Rfft, "rfft2"))
}

/// Inverse of [`rfft2`].
#[track_caller]
pub fn irfft2(a: &Array, s: Option<&[usize]>, axes: &[isize]) -> Array {
    Array::build(|| transform(a, s, Some(axes), Kind::Irfft, "irfft2"))
}

/// n-dimensional DFT over `axes` (default: all), each resized to `s` if given (`s` needs `axes`).
#[track_caller]
pub fn fftn(a: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Array {
    Array::build(|| transform(a, s, axes, Kind::Fft, "fftn"))
}

/// Inverse of [`fftn`].
#[track_caller]
pub fn ifftn(a: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Array {
    Array::build(|| transform(a, s, axes, Kind::Ifft, "ifftn"))
}

/// n-dimensional real DFT; the last of `axes` holds the halved spectrum.
#[track_caller]
pub fn rfftn(a: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Array {
    Array::build(|| transform(a, s, axes, Kind::Rfft, "rfftn"))
}

/// Inverse of [`rfftn`]: the last axis defaults to `2 * (bins - 1)` samples.
#[track_caller]
pub fn irfftn(a: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Array {
    Array::build(|| transform(a, s, axes, Kind::Irfft, "irfftn"))
}

fn shift(a: &Array, axes: Option<&[isize]>, inverse: bool, name: &str) -> Result<Array> {
    a.check()?;
    let axes = resolve_axes(a, None, axes, name)?;
    let mut x = a.clone();
    for ax in axes {
        let n = a.shape()[ax] as isize;
        // fftshift rolls by floor(n/2); ifftshift undoes it (they differ for odd n).
        let by = if inverse { -(n / 2) } else { n / 2 };
        x = super::roll(&x, by, Some(ax as isize));
    }
    Ok(x)
}

/// Moves the zero-frequency bin to the centre of `axes` (default: all).
#[track_caller]
pub fn fftshift(a: &Array, axes: Option<&[isize]>) -> Array {
    Array::build(|| shift(a, axes, false, "fftshift"))
}

/// Inverse of [`fftshift`].
#[track_caller]
pub fn ifftshift(a: &Array, axes: Option<&[isize]>) -> Array {
    Array::build(|| shift(a, axes, true, "ifftshift"))
}
