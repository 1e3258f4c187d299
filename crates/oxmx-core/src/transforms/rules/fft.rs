//! Derivatives of the FFT family. Complex cotangents follow the convention `∂L/∂Re + i·∂L/∂Im`
//! (PyTorch's and MLX's), under which the cotangent of a linear map is its adjoint for the real
//! inner product `Re(conj(a)·b)`. The primitives are unnormalised forward / `1/n` inverse
//! transforms of the full length along `axis` (the op layer pads or crops first).

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::FftOp;

pub(super) fn vjp(op: &FftOp, x: &Array, g: &Array) -> Result<Array> {
    Ok(match *op {
        // y = F x  ⇒  x̄ = Fᴴ ȳ = n · ifft(ȳ);  y = Fᴴ x / n  ⇒  x̄ = F ȳ / n.
        FftOp::Fft { axis, inverse } => {
            let n = x.shape()[axis] as f64;
            if inverse {
                o::fft::fft(g, None, axis as isize) / n
            } else {
                o::fft::ifft(g, None, axis as isize) * n
            }
        }
        // y = first n/2+1 bins of F x (x real)  ⇒  x̄ = Re(n · ifft(ȳ zero-extended to n)).
        FftOp::Rfft { axis } => {
            let n = x.shape()[axis];
            let mut widths = vec![(0usize, 0usize); g.ndim()];
            widths[axis].1 = n - g.shape()[axis];
            let full = o::pad_constant(g, &widths, 0.0);
            o::real(&(o::fft::ifft(&full, None, axis as isize) * n as f64))
        }
        // y_t = (1/n) Σ_k c_k Re(x_k e^{2πikt/n}), c_k = 2 except the DC and Nyquist bins
        // (whose imaginary parts are ignored)  ⇒  x̄_k = c_k / n · rfft(ȳ)_k.
        FftOp::Irfft { axis, n } => {
            let m = x.shape()[axis];
            let mut c = vec![2.0f32; m];
            c[0] = 1.0;
            if n % 2 == 0 && m == n / 2 + 1 {
                c[m - 1] = 1.0;
            }
            let mut cshape = vec![1usize; g.ndim()];
            cshape[axis] = m;
            let scale = Array::from_slice(&c, &cshape) / n as f64;
            o::fft::rfft(g, Some(n), axis as isize) * scale
        }
    })
}
