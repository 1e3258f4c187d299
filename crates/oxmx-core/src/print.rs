//! Printing in MLX's format: `array([1, 2, 3], dtype=int32)`.

use crate::array::Array;
use crate::dtype::Dtype;
use std::fmt;

pub fn format_array(a: &Array, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let data = match a.data() {
        Ok(d) => d,
        Err(e) => return write!(f, "array(<error: {e}>)"),
    };
    let value = |flat: usize| -> String { crate::dispatch!(data.dtype, T => format_value(data.get_as::<T>(flat))) };
    let mut body = String::new();
    write_nested(&mut body, &data.shape, &value, 0, 0, 7);
    write!(f, "array({body}, dtype={})", a.dtype().name())
}

fn format_value<T: crate::dtype::Element>(v: T) -> String {
    match T::DTYPE {
        Dtype::Bool => {
            if v.to_f64() != 0.0 {
                "True".into()
            } else {
                "False".into()
            }
        }
        d if d.is_integer() => v.to_i128().to_string(),
        Dtype::Complex64 => {
            let z = v.to_c32();
            format!("{}{}{}j", fmt_float(z.re as f64, 6), if z.im < 0.0 { "-" } else { "+" }, fmt_float(z.im.abs() as f64, 6))
        }
        _ => fmt_float(v.to_f64(), 6),
    }
}

/// `%g`-style: up to `digits` significant digits, no trailing zeros.
pub fn fmt_float(x: f64, digits: usize) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // %g decides on the exponent of the value rounded to `digits` significant digits (log10
    // of 0.0001f32 is just below -4, yet it prints as 0.0001).
    let s = format!("{:.*e}", digits - 1, x);
    let (m, e) = s.split_once('e').unwrap();
    let exp: i32 = e.parse().unwrap();
    if exp < -4 || exp >= digits as i32 {
        let m = trim_zeros(m);
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (digits as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, x)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Dimensions longer than this print their first and last `EDGE_ITEMS` entries around `...`.
const SUMMARIZE_ABOVE: usize = 6;
const EDGE_ITEMS: usize = 3;

fn write_nested(out: &mut String, shape: &[usize], value: &dyn Fn(usize) -> String, depth: usize, base: usize, indent: usize) {
    if shape.is_empty() {
        out.push_str(&value(base));
        return;
    }
    out.push('[');
    let n = shape[0];
    let inner: usize = shape[1..].iter().product();
    let shown: Vec<Option<usize>> = if n > SUMMARIZE_ABOVE {
        (0..EDGE_ITEMS).map(Some).chain(std::iter::once(None)).chain((n - EDGE_ITEMS..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    for (k, item) in shown.iter().enumerate() {
        if k > 0 {
            if shape.len() > 1 {
                // One line break at every depth (MLX 0.32.4 prints no blank lines between blocks).
                out.push_str(",\n");
                out.push_str(&" ".repeat(indent + depth));
            } else {
                out.push_str(", ");
            }
        }
        match item {
            Some(i) => write_nested(out, &shape[1..], value, depth + 1, base + i * inner, indent),
            None => out.push_str("..."),
        }
    }
    out.push(']');
}
