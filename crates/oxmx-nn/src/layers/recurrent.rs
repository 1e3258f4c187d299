//! Recurrent layers of `mlx.nn`: `RNN` (Elman), `GRU` and `LSTM`, over `[N, L, D]` or `[L, D]`
//! inputs, returning the hidden state at every step. Parameter names and layouts are MLX's:
//! `RNN { Wxh, Whh, bias }`, `GRU { Wx, Wh, b, bhn }`, `LSTM { Wx, Wh, bias }` with the gates
//! stacked along the first axis (GRU: r, z, n; LSTM: i, f, g, o), as PyTorch stacks them.
#![allow(non_snake_case)]

use super::transformer::ActivationFn;
use crate::{init, Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype, Error};

fn uniform(shape: &[usize], hidden_size: usize) -> Array {
    let scale = 1.0 / (hidden_size as f64).sqrt();
    init::uniform(shape, Dtype::Float32, -scale, scale)
}

/// `x @ w.T (+ b)`.
fn project(x: &Array, w: &Array, b: Option<&Array>) -> Array {
    let wt = ops::swapaxes(w, -1, -2);
    match b {
        Some(b) => ops::addmm(b, x, &wt, 1.0, 1.0),
        None => ops::matmul(x, &wt),
    }
}

/// Step `t` along the sequence axis (-2).
fn at_step(x: &Array, t: usize) -> Array {
    let nd = x.ndim();
    let mut specs = vec![ops::SliceSpec::FULL; nd];
    specs[nd - 2] = ops::SliceSpec::new(Some(t as isize), Some(t as isize + 1), 1);
    ops::squeeze(&ops::slice(x, &specs), &[-2])
}

/// The last axis split at `at`: `(x[..., :at], x[..., at:])`.
fn split_last(x: &Array, at: usize) -> (Array, Array) {
    let mut v = ops::split_at(x, &[at as isize], -1);
    let b = v.pop().expect("two parts");
    let a = v.pop().expect("two parts");
    (a, b)
}

/// Checks `x: [N, L, input_size]` or `[L, input_size]` and an optional state `[N, H]` / `[H]`
/// (`[H]` also for a batched input: it broadcasts).
fn check_inputs(layer: &str, x: &Array, input_size: usize, hidden_size: usize, states: &[(&str, Option<&Array>)]) -> Result<(), Error> {
    x.check()?;
    let nd = x.ndim();
    if !(nd == 2 || nd == 3) || x.shape()[nd - 1] != input_size {
        return Err(Error::invalid(format!(
            "[{layer}] expected an input of shape [N, L, {input_size}] or [L, {input_size}], got shape {:?}",
            x.shape()
        )));
    }
    let mut want = x.shape()[..nd - 2].to_vec();
    want.push(hidden_size);
    for (name, s) in states {
        if let Some(s) = s {
            s.check()?;
            // One unbatched state broadcasts over the batch, as in MLX.
            if s.shape() != want.as_slice() && s.shape() != [hidden_size] {
                return Err(Error::invalid(format!(
                    "[{layer}] expected the initial {name} state of shape {want:?} for input shape {:?}, got shape {:?}",
                    x.shape(),
                    s.shape()
                )));
            }
        }
    }
    Ok(())
}

/// Elman RNN: `h_{t+1} = nonlinearity(W_xh x_t + W_hh h_t + bias)` (tanh by default).
#[derive(Module, Clone, Debug)]
pub struct RNN {
    /// `[hidden_size, input_size]`.
    pub Wxh: Array,
    /// `[hidden_size, hidden_size]`.
    pub Whh: Array,
    /// `[hidden_size]`.
    pub bias: Option<Array>,
    pub hidden_size: usize,
    #[module(skip)]
    pub nonlinearity: ActivationFn,
    pub state: ModuleState,
}

impl RNN {
    /// tanh, with a bias; everything drawn from U(-1/sqrt(H), 1/sqrt(H)) as MLX.
    pub fn new(input_size: usize, hidden_size: usize) -> RNN {
        RNN::with_options(input_size, hidden_size, true, None)
    }

    /// `nonlinearity: None` is tanh.
    pub fn with_options(input_size: usize, hidden_size: usize, bias: bool, nonlinearity: Option<ActivationFn>) -> RNN {
        RNN {
            Wxh: uniform(&[hidden_size, input_size], hidden_size),
            Whh: uniform(&[hidden_size, hidden_size], hidden_size),
            bias: bias.then(|| uniform(&[hidden_size], hidden_size)),
            hidden_size,
            nonlinearity: nonlinearity.unwrap_or_else(ActivationFn::tanh),
            state: ModuleState::default(),
        }
    }

    /// `x: [N, L, D]` or `[L, D]`, `hidden: [N, H]` / `[H]` (zero when absent) -> `[N, L, H]` /
    /// `[L, H]`.
    pub fn forward(&self, x: &Array, hidden: Option<&Array>) -> Array {
        let d = self.Wxh.shape().get(1).copied().unwrap_or(0);
        if let Err(e) = check_inputs("RNN", x, d, self.hidden_size, &[("hidden", hidden)]) {
            return Array::error(e);
        }
        let xp = project(x, &self.Wxh, self.bias.as_ref());
        let whh_t = ops::swapaxes(&self.Whh, -1, -2);
        let mut h = hidden.cloned();
        let mut all = Vec::new();
        for t in 0..x.shape()[x.ndim() - 2] {
            let xt = at_step(&xp, t);
            let pre = match &h {
                Some(h) => ops::addmm(&xt, h, &whh_t, 1.0, 1.0),
                None => xt,
            };
            let next = self.nonlinearity.call(&pre);
            all.push(next.clone());
            h = Some(next);
        }
        stack_steps(all, x, self.hidden_size)
    }
}

impl UnaryModule for RNN {
    /// No initial hidden state.
    fn forward(&self, x: &Array) -> Array {
        RNN::forward(self, x, None)
    }
}

/// `[.., H]` per step -> `[.., L, H]` (an empty `[.., 0, H]` for an empty sequence).
fn stack_steps(all: Vec<Array>, x: &Array, hidden_size: usize) -> Array {
    if all.is_empty() {
        let mut s = x.shape().to_vec();
        let nd = s.len();
        s[nd - 1] = hidden_size;
        return ops::zeros(&s, x.dtype());
    }
    ops::stack(&all, -2)
}

/// Gated recurrent unit (MLX's formulation, the same as PyTorch's):
/// `r, z = σ(W_x{r,z} x + W_h{r,z} h + b_{r,z})`, `n = tanh(W_xn x + b_n + r ⊙ (W_hn h + b_hn))`,
/// `h' = (1 - z) ⊙ n + z ⊙ h`. `b` (`[3H]`) is added to the input projection; `bhn` (`[H]`) is
/// the hidden bias of `n` only (PyTorch's `b_hr`, `b_hz` fold into `b`).
#[derive(Module, Clone, Debug)]
pub struct GRU {
    /// `[3 * hidden_size, input_size]`.
    pub Wx: Array,
    /// `[3 * hidden_size, hidden_size]`.
    pub Wh: Array,
    /// `[3 * hidden_size]`.
    pub b: Option<Array>,
    /// `[hidden_size]`.
    pub bhn: Option<Array>,
    pub hidden_size: usize,
    pub state: ModuleState,
}

impl GRU {
    pub fn new(input_size: usize, hidden_size: usize, bias: bool) -> GRU {
        let h = hidden_size;
        GRU {
            Wx: uniform(&[3 * h, input_size], h),
            Wh: uniform(&[3 * h, h], h),
            b: bias.then(|| uniform(&[3 * h], h)),
            bhn: bias.then(|| uniform(&[h], h)),
            hidden_size,
            state: ModuleState::default(),
        }
    }

    /// `x: [N, L, D]` or `[L, D]`, `hidden: [N, H]` / `[H]` (zero when absent) -> `[N, L, H]` /
    /// `[L, H]`.
    pub fn forward(&self, x: &Array, hidden: Option<&Array>) -> Array {
        let h_sz = self.hidden_size;
        let d = self.Wx.shape().get(1).copied().unwrap_or(0);
        if let Err(e) = check_inputs("GRU", x, d, h_sz, &[("hidden", hidden)]) {
            return Array::error(e);
        }
        let xp = project(x, &self.Wx, self.b.as_ref());
        let (x_rz, x_n) = split_last(&xp, 2 * h_sz);
        let wh_t = ops::swapaxes(&self.Wh, -1, -2);
        let mut h = hidden.cloned();
        let mut all = Vec::new();
        for t in 0..x.shape()[x.ndim() - 2] {
            let mut rz = at_step(&x_rz, t);
            let mut h_proj_n = None;
            if let Some(h) = &h {
                let hp = ops::matmul(h, &wh_t);
                let (hp_rz, mut hp_n) = split_last(&hp, 2 * h_sz);
                if let Some(bhn) = &self.bhn {
                    hp_n = &hp_n + bhn;
                }
                rz = &rz + &hp_rz;
                h_proj_n = Some(hp_n);
            }
            let rz = ops::sigmoid(&rz);
            let (r, z) = split_last(&rz, h_sz);
            let mut n = at_step(&x_n, t);
            if let Some(hp_n) = &h_proj_n {
                n = &n + &(&r * hp_n);
            } else if let Some(bhn) = &self.bhn {
                n = &n + &(&r * bhn);
            }
            let n = ops::tanh(&n);
            let next = match &h {
                Some(h) => &(&(1.0 - &z) * &n) + &(&z * h),
                None => &(1.0 - &z) * &n,
            };
            all.push(next.clone());
            h = Some(next);
        }
        stack_steps(all, x, h_sz)
    }
}

impl UnaryModule for GRU {
    /// No initial hidden state.
    fn forward(&self, x: &Array) -> Array {
        GRU::forward(self, x, None)
    }
}

/// Long short-term memory: gates `i, f, g, o` from `W_x x + W_h h + bias`,
/// `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.
#[derive(Module, Clone, Debug)]
pub struct LSTM {
    /// `[4 * hidden_size, input_size]`.
    pub Wx: Array,
    /// `[4 * hidden_size, hidden_size]`.
    pub Wh: Array,
    /// `[4 * hidden_size]` (PyTorch's `bias_ih + bias_hh`).
    pub bias: Option<Array>,
    pub hidden_size: usize,
    pub state: ModuleState,
}

impl LSTM {
    pub fn new(input_size: usize, hidden_size: usize, bias: bool) -> LSTM {
        let h = hidden_size;
        LSTM {
            Wx: uniform(&[4 * h, input_size], h),
            Wh: uniform(&[4 * h, h], h),
            bias: bias.then(|| uniform(&[4 * h], h)),
            hidden_size,
            state: ModuleState::default(),
        }
    }

    /// `x: [N, L, D]` or `[L, D]`, optional initial `hidden` and `cell` (`[N, H]` / `[H]`, zero
    /// when absent) -> `(hidden, cell)` at every step, each `[N, L, H]` / `[L, H]`.
    pub fn forward(&self, x: &Array, hidden: Option<&Array>, cell: Option<&Array>) -> (Array, Array) {
        let h_sz = self.hidden_size;
        let d = self.Wx.shape().get(1).copied().unwrap_or(0);
        if let Err(e) = check_inputs("LSTM", x, d, h_sz, &[("hidden", hidden), ("cell", cell)]) {
            return (Array::error(e.clone()), Array::error(e));
        }
        let xp = project(x, &self.Wx, self.bias.as_ref());
        let wh_t = ops::swapaxes(&self.Wh, -1, -2);
        let (mut h, mut c) = (hidden.cloned(), cell.cloned());
        let (mut all_h, mut all_c) = (Vec::new(), Vec::new());
        for t in 0..x.shape()[x.ndim() - 2] {
            let mut ifgo = at_step(&xp, t);
            if let Some(h) = &h {
                ifgo = ops::addmm(&ifgo, h, &wh_t, 1.0, 1.0);
            }
            let gates = ops::split_equal(&ifgo, 4, -1);
            let i = ops::sigmoid(&gates[0]);
            let f = ops::sigmoid(&gates[1]);
            let g = ops::tanh(&gates[2]);
            let o = ops::sigmoid(&gates[3]);
            let next_c = match &c {
                Some(c) => &(&f * c) + &(&i * &g),
                None => &i * &g,
            };
            let next_h = &o * &ops::tanh(&next_c);
            all_h.push(next_h.clone());
            all_c.push(next_c.clone());
            h = Some(next_h);
            c = Some(next_c);
        }
        (stack_steps(all_h, x, h_sz), stack_steps(all_c, x, h_sz))
    }
}
