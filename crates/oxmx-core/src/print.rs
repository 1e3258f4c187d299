//! Printing in MLX's format: `array([1, 2, 3], dtype=int32)`.

use crate::array::Array;
use crate::dtype::Dtype;
use std::fmt;

pub fn format_array(a: &Array, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let data = match a.data() {
        Ok(d) => d,
        Err(e) => return write!(f, "array(<error: {e}>)"),
    };
    let vals: Vec<String> = crate::dispatch!(data.dtype, T => data.row_major::<T>().iter().map(|v| format_value(*v)).collect());
    let mut body = String::new();
    write_nested(&mut body, &data.shape, &vals, 0, &mut 0, 7);
    write!(f, "array({body}, dtype={})", a.dtype().name())
}

fn format_value<T: crate::dtype::Element>(v: T) -> String {
    match T::DTYPE {
        Dtype::Bool => if v.to_f64() != 0.0 { "True".into() } else { "False".into() },
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
    let exp = x.abs().log10().floor() as i32;
    if exp < -4 || exp >= digits as i32 {
        let s = format!("{:.*e}", digits - 1, x);
        let (m, e) = s.split_once('e').unwrap();
        let m = trim_zeros(m);
        let e: i32 = e.parse().unwrap();
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
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

fn write_nested(out: &mut String, shape: &[usize], vals: &[String], depth: usize, pos: &mut usize, indent: usize) {
    if shape.is_empty() {
        out.push_str(&vals[*pos]);
        *pos += 1;
        return;
    }
    out.push('[');
    let n = shape[0];
    for i in 0..n {
        if i > 0 {
            if shape.len() > 1 {
                out.push(',');
                for _ in 0..(shape.len() - 1) {
                    out.push('\n');
                }
                out.push_str(&" ".repeat(indent + depth));
            } else {
                out.push_str(", ");
            }
        }
        write_nested(out, &shape[1..], vals, depth + 1, pos, indent);
    }
    out.push(']');
}
