//! Loss functions with MLX's definitions and defaults (`mlx.nn.losses`). Shape errors come back
//! as error arrays (surfaced by `check`, `item`, `eval`) naming the shapes, as every op does.

use oxmx_core::{linalg, ops, stop_gradient, Array, Error};

/// How a per-element loss is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    None,
    Mean,
    Sum,
}

pub fn reduce(loss: Array, reduction: Reduction) -> Array {
    match reduction {
        Reduction::None => loss,
        Reduction::Mean => ops::mean(&loss, None, false),
        Reduction::Sum => ops::sum(&loss, None, false),
    }
}

fn fail(msg: String) -> Array {
    Array::error(Error::invalid(msg))
}

fn same_shape(name: &str, what: &str, a: &Array, b: &Array) -> Option<Array> {
    (a.shape() != b.shape()).then(|| fail(format!("[{name}] {what} shape {:?} does not match {:?}", a.shape(), b.shape())))
}

fn weighted(name: &str, loss: Array, weights: Option<&Array>) -> Array {
    match weights {
        Some(w) if w.shape() != loss.shape() => {
            fail(format!("[{name}] weights with shape {:?} differ from the loss shape {:?}", w.shape(), loss.shape()))
        }
        Some(w) => &loss * w,
        None => loss,
    }
}

/// The target's entry along `axis` (`targets` holds class indices).
fn pick(x: &Array, targets: &Array, axis: isize) -> Array {
    ops::squeeze(&ops::take_along_axis(x, &ops::expand_dims(targets, &[axis]), Some(axis)), &[axis])
}

/// Options of [`cross_entropy`]; `Default` gives MLX's defaults.
#[derive(Clone, Debug)]
pub struct CrossEntropy {
    pub weights: Option<Array>,
    pub axis: isize,
    pub label_smoothing: f64,
    pub reduction: Reduction,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy { weights: None, axis: -1, label_smoothing: 0.0, reduction: Reduction::None }
    }
}

/// Cross entropy of `logits` against class indices (one axis fewer) or probabilities (same shape).
pub fn cross_entropy(logits: &Array, targets: &Array, opts: &CrossEntropy) -> Array {
    let ls = opts.label_smoothing;
    if !(0.0..1.0).contains(&ls) {
        return fail(format!("[cross_entropy] label smoothing must be in [0, 1), got {ls}"));
    }
    let nd = logits.ndim() as isize;
    let axis = if opts.axis < 0 { opts.axis + nd } else { opts.axis };
    if axis < 0 || axis >= nd {
        return fail(format!("[cross_entropy] axis {} is out of range for logits of shape {:?}", opts.axis, logits.shape()));
    }
    let as_probs = targets.ndim() == logits.ndim();
    let mut dropped = logits.shape().to_vec();
    dropped.remove(axis as usize);
    if (as_probs && targets.shape() != logits.shape()) || (!as_probs && targets.shape() != dropped.as_slice()) {
        return fail(format!("[cross_entropy] targets shape {:?} does not match logits shape {:?}", targets.shape(), logits.shape()));
    }
    let logits = logits - &stop_gradient(&ops::max(logits, axis, true));
    let score = if as_probs { ops::sum(&(&logits * targets), axis, false) } else { pick(&logits, targets, axis) };
    let lse = ops::logsumexp(&logits, axis, false);
    let loss = if ls > 0.0 {
        let smoothed = ops::mean(&logits, axis, false) * -ls;
        lse - score * (1.0 - ls) + smoothed
    } else {
        lse - score
    };
    reduce(weighted("cross_entropy", loss, opts.weights.as_ref()), opts.reduction)
}

/// Binary cross entropy on logits (`with_logits`) or probabilities (logs clipped at -100).
/// MLX's default reduction here is `Mean`.
pub fn binary_cross_entropy(inputs: &Array, targets: &Array, weights: Option<&Array>, with_logits: bool, reduction: Reduction) -> Array {
    if let Some(e) = same_shape("binary_cross_entropy", "inputs", inputs, targets) {
        return e;
    }
    let loss = if with_logits {
        ops::logaddexp(0.0, inputs) - inputs * targets
    } else {
        let lo = Some((-100.0).into());
        let log_p = ops::clip(&ops::log(inputs), lo.clone(), None);
        let log_q = ops::clip(&ops::log(&(1.0 - inputs)), lo, None);
        -(targets * &log_p + (1.0 - targets) * log_q)
    };
    reduce(weighted("binary_cross_entropy", loss, weights), reduction)
}

/// Negative log likelihood of log-probabilities `inputs` at class indices `targets`.
pub fn nll_loss(inputs: &Array, targets: &Array, axis: isize, reduction: Reduction) -> Array {
    reduce(-pick(inputs, targets, axis), reduction)
}

/// KL divergence with both arguments as log-probabilities.
pub fn kl_div_loss(inputs: &Array, targets: &Array, axis: isize, reduction: Reduction) -> Array {
    reduce(ops::sum(&(ops::exp(targets) * (targets - inputs)), axis, false), reduction)
}

/// MLX default reduction: `Mean`.
pub fn mse_loss(predictions: &Array, targets: &Array, reduction: Reduction) -> Array {
    if let Some(e) = same_shape("mse_loss", "predictions", predictions, targets) {
        return e;
    }
    reduce(ops::square(&(predictions - targets)), reduction)
}

/// MLX default reduction: `Mean`.
pub fn l1_loss(predictions: &Array, targets: &Array, reduction: Reduction) -> Array {
    if let Some(e) = same_shape("l1_loss", "predictions", predictions, targets) {
        return e;
    }
    reduce(ops::abs(&(predictions - targets)), reduction)
}

/// MLX defaults: `beta = 1`, reduction `Mean`.
pub fn smooth_l1_loss(predictions: &Array, targets: &Array, beta: f64, reduction: Reduction) -> Array {
    if let Some(e) = same_shape("smooth_l1_loss", "predictions", predictions, targets) {
        return e;
    }
    let diff = ops::abs(&(predictions - targets));
    let loss = ops::where_(ops::less(&diff, beta), ops::square(&diff) * (0.5 / beta), &diff - 0.5 * beta);
    reduce(loss, reduction)
}

/// MLX defaults: `delta = 1`, reduction `None`.
pub fn huber_loss(inputs: &Array, targets: &Array, delta: f64, reduction: Reduction) -> Array {
    let abs = ops::abs(&(inputs - targets));
    let quadratic = ops::minimum(&abs, delta);
    let linear = &abs - &quadratic;
    reduce(ops::square(&quadratic) * 0.5 + linear * delta, reduction)
}

pub fn log_cosh_loss(inputs: &Array, targets: &Array, reduction: Reduction) -> Array {
    let e = inputs - targets;
    reduce(ops::logaddexp(&e, &-&e) - std::f64::consts::LN_2, reduction)
}

pub fn hinge_loss(inputs: &Array, targets: &Array, reduction: Reduction) -> Array {
    reduce(ops::maximum(1.0 - inputs * targets, 0.0), reduction)
}

/// MLX defaults: `axis = -1`, `p = 2`, `margin = 1`, `eps = 1e-6`.
#[allow(clippy::too_many_arguments)]
pub fn triplet_loss(
    anchors: &Array,
    positives: &Array,
    negatives: &Array,
    axis: isize,
    p: f64,
    margin: f64,
    eps: f64,
    reduction: Reduction,
) -> Array {
    let dist = |other: &Array| ops::power(ops::sum(&ops::power(ops::abs(&(anchors - other)), p), axis, false) + eps, 1.0 / p);
    reduce(ops::maximum(dist(positives) - dist(negatives) + margin, 0.0), reduction)
}

/// MLX defaults: `axis = 1`, `eps = 1e-8`. (Despite the name this is the similarity itself.)
pub fn cosine_similarity_loss(x1: &Array, x2: &Array, axis: isize, eps: f64, reduction: Reduction) -> Array {
    let n1 = linalg::norm(x1, None, axis, false);
    let n2 = linalg::norm(x2, None, axis, false);
    reduce(ops::sum(&(x1 * x2), axis, false) / ops::maximum(&n1 * &n2, eps), reduction)
}

pub fn margin_ranking_loss(inputs1: &Array, inputs2: &Array, targets: &Array, margin: f64, reduction: Reduction) -> Array {
    if inputs1.shape() != inputs2.shape() || inputs1.shape() != targets.shape() {
        return fail(format!(
            "[margin_ranking_loss] shapes differ: inputs1 {:?}, inputs2 {:?}, targets {:?}",
            inputs1.shape(),
            inputs2.shape(),
            targets.shape()
        ));
    }
    reduce(ops::maximum(-targets * (inputs1 - inputs2) + margin, 0.0), reduction)
}

/// MLX defaults: `full = false`, `eps = 1e-6`, reduction `Mean`.
pub fn gaussian_nll_loss(inputs: &Array, targets: &Array, vars: &Array, full: bool, eps: f64, reduction: Reduction) -> Array {
    if let Some(e) =
        same_shape("gaussian_nll_loss", "inputs", inputs, targets).or_else(|| same_shape("gaussian_nll_loss", "inputs", inputs, vars))
    {
        return e;
    }
    let vars = ops::maximum(vars, eps);
    let mut loss = (ops::log(&vars) + ops::square(&(targets - inputs)) / &vars) * 0.5;
    if full {
        loss = loss + 0.5 * (2.0 * std::f64::consts::PI).ln();
    }
    reduce(loss, reduction)
}
