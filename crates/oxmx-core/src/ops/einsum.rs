//! `einsum` and `einsum_path` (MLX/NumPy semantics): subscripts with `...` broadcasting, implicit
//! output (indices seen once, sorted), repeated indices as diagonals, and a greedy pairwise
//! contraction order. Each pairwise step is a batched matmul after transposes and reshapes, so
//! the work lands in the matmul kernel.

use crate::array::Array;
use crate::dtype::promote_types;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// One operand during contraction: the array and one index character per axis.
#[derive(Clone)]
struct Term {
    a: Array,
    idx: Vec<char>,
}

/// The parsed equation: index characters per input and for the output, and each index's size.
struct Equation {
    inputs: Vec<Vec<char>>,
    output: Vec<char>,
    sizes: BTreeMap<char, usize>,
}

fn err(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("[einsum] {msg}"))
}

/// Parses `subscripts` against the operands' shapes. `...` becomes fresh characters (from the
/// Unicode private use area, which no user subscript can contain) aligned from the right.
fn parse(subscripts: &str, shapes: &[&[usize]]) -> Result<Equation> {
    let s: String = subscripts.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match s.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (s.clone(), None),
    };
    let parts: Vec<&str> = lhs.split(',').collect();
    if parts.len() != shapes.len() {
        return Err(err(format!("Number of operands, {}, does not match the number of subscripts, {}.", shapes.len(), parts.len())));
    }
    let ell_rank = parts
        .iter()
        .zip(shapes)
        .filter(|(p, _)| p.contains("..."))
        .map(|(p, sh)| sh.len().saturating_sub(p.replace("...", "").chars().count()))
        .max()
        .unwrap_or(0);
    let ell: Vec<char> = (0..ell_rank).map(|i| char::from_u32(0xE000 + i as u32).unwrap()).collect();
    let mut inputs = Vec::new();
    let mut sizes: BTreeMap<char, usize> = BTreeMap::new();
    for (k, (p, shape)) in parts.iter().zip(shapes).enumerate() {
        let mut idx = Vec::new();
        let (before, after) = match p.split_once("...") {
            Some((b, a)) => (b, Some(a)),
            None => (*p, None),
        };
        let explicit = before.chars().count() + after.map_or(0, |a| a.chars().count());
        for c in before.chars() {
            idx.push(c);
        }
        if let Some(after) = after {
            if shape.len() < explicit {
                return Err(err(format!("Operand {k} with shape {shape:?} has fewer dimensions than subscript '{p}'.")));
            }
            let n = shape.len() - explicit;
            idx.extend_from_slice(&ell[ell_rank - n..]);
            idx.extend(after.chars());
        }
        if idx.len() != shape.len() {
            return Err(err(format!("Operand {k} with shape {shape:?} does not match subscript '{p}'.")));
        }
        for (&c, &d) in idx.iter().zip(shape.iter()) {
            if !(c.is_ascii_alphabetic() || ell.contains(&c)) {
                return Err(err(format!("Subscripts must be letters, got '{c}' in '{p}'.")));
            }
            match sizes.get(&c) {
                // Size-1 dims broadcast, as in NumPy.
                Some(&e) if e != d && e != 1 && d != 1 => {
                    return Err(err(format!("Size of label '{c}' for operand {k} ({d}) does not match previous terms ({e}).")))
                }
                Some(&e) if e >= d => {}
                _ => {
                    sizes.insert(c, d);
                }
            }
        }
        inputs.push(idx);
    }
    let output: Vec<char> = match rhs {
        Some(r) => {
            let mut out: Vec<char> = Vec::new();
            let (before, after) = match r.split_once("...") {
                Some((b, a)) => (b.to_string(), Some(a.to_string())),
                None => (r.clone(), None),
            };
            out.extend(before.chars());
            // Broadcast dims missing from an explicit output are summed.
            if let Some(a) = after {
                out.extend_from_slice(&ell);
                out.extend(a.chars());
            }
            for (i, c) in out.iter().enumerate() {
                if !sizes.contains_key(c) {
                    return Err(err(format!("Output subscript '{c}' does not appear in the input subscripts.")));
                }
                if out[..i].contains(c) {
                    return Err(err(format!("Output subscript '{c}' appears more than once.")));
                }
            }
            out
        }
        None => {
            // Implicit output: broadcast dims first, then the labels seen exactly once, sorted.
            let mut count: BTreeMap<char, usize> = BTreeMap::new();
            for i in &inputs {
                for &c in i {
                    *count.entry(c).or_default() += 1;
                }
            }
            let mut out: Vec<char> = ell.clone();
            out.extend(count.iter().filter(|(c, &n)| n == 1 && !ell.contains(c)).map(|(&c, _)| c));
            out
        }
    };
    Ok(Equation { inputs, output, sizes })
}

/// Takes the diagonal of repeated indices, broadcasts size-1 dims to the common size, and sums
/// indices no other operand or the output needs.
fn prepare(mut t: Term, sizes: &BTreeMap<char, usize>, needed: &dyn Fn(char) -> bool) -> Term {
    loop {
        let dup = (0..t.idx.len()).find_map(|i| (i + 1..t.idx.len()).find(|&j| t.idx[j] == t.idx[i]).map(|j| (i, j)));
        let Some((i, j)) = dup else { break };
        // `diagonal` removes both axes and appends the diagonal last.
        let c = t.idx[i];
        t.a = super::diagonal(&t.a, 0, i as isize, j as isize);
        t.idx.remove(j);
        t.idx.remove(i);
        t.idx.push(c);
    }
    let full: Vec<usize> = t.idx.iter().map(|c| sizes[c]).collect();
    if full.as_slice() != t.a.shape() {
        t.a = super::broadcast_to(&t.a, &full);
    }
    let drop: Vec<isize> = (0..t.idx.len()).filter(|&i| !needed(t.idx[i])).map(|i| i as isize).collect();
    if !drop.is_empty() {
        t.a = super::sum(&t.a, drop.clone(), false);
        t.idx = t.idx.iter().enumerate().filter(|(i, _)| !drop.contains(&(*i as isize))).map(|(_, &c)| c).collect();
    }
    t
}

/// Contracts two prepared terms; `keep` says which indices must survive.
fn contract(x: Term, y: Term, sizes: &BTreeMap<char, usize>, keep: &dyn Fn(char) -> bool) -> Term {
    let in_y = |c: &char| y.idx.contains(c);
    let batch: Vec<char> = x.idx.iter().filter(|c| in_y(c) && keep(**c)).copied().collect();
    let inner: Vec<char> = x.idx.iter().filter(|c| in_y(c) && !keep(**c)).copied().collect();
    let xf: Vec<char> = x.idx.iter().filter(|c| !in_y(c)).copied().collect();
    let yf: Vec<char> = y.idx.iter().filter(|c| !x.idx.contains(c)).copied().collect();
    let pos = |t: &Term, c: char| t.idx.iter().position(|&d| d == c).unwrap() as isize;
    let prod = |cs: &[char]| cs.iter().map(|c| sizes[c]).product::<usize>();
    let xp: Vec<isize> = batch.iter().chain(&xf).chain(&inner).map(|&c| pos(&x, c)).collect();
    let yp: Vec<isize> = batch.iter().chain(&inner).chain(&yf).map(|&c| pos(&y, c)).collect();
    let (b, m, k, n) = (prod(&batch), prod(&xf), prod(&inner), prod(&yf));
    let xa = super::reshape_to(&super::transpose(&x.a, &xp), &[b, m, k]);
    let ya = super::reshape_to(&super::transpose(&y.a, &yp), &[b, k, n]);
    let idx: Vec<char> = batch.iter().chain(&xf).chain(&yf).copied().collect();
    let shape: Vec<usize> = idx.iter().map(|c| sizes[c]).collect();
    Term { a: super::reshape_to(&super::matmul(&xa, &ya), &shape), idx }
}

fn size_of(idx: &[char], sizes: &BTreeMap<char, usize>) -> usize {
    idx.iter().map(|c| sizes[c]).product()
}

/// The greedy order: repeatedly contract the pair sharing an index whose result is smallest
/// relative to its inputs (outer products only when nothing shares an index); the result goes
/// to the end of the list, as in NumPy's and MLX's paths.
fn greedy_path(inputs: &[Vec<char>], output: &[char], sizes: &BTreeMap<char, usize>) -> Vec<(usize, usize)> {
    let mut terms: Vec<Vec<char>> = inputs.to_vec();
    let mut path = Vec::new();
    while terms.len() > 1 {
        let mut best: Option<(bool, i128, usize, usize)> = None;
        for i in 0..terms.len() {
            for j in i + 1..terms.len() {
                let shares = terms[i].iter().any(|c| terms[j].contains(c));
                let res = pair_result(&terms, i, j, output);
                let cost = size_of(&res, sizes) as i128 - size_of(&terms[i], sizes) as i128 - size_of(&terms[j], sizes) as i128;
                let cand = (!shares, cost, i, j);
                if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                    best = Some(cand);
                }
            }
        }
        let (_, _, i, j) = best.unwrap();
        let res = pair_result(&terms, i, j, output);
        terms.remove(j);
        terms.remove(i);
        terms.push(res);
        path.push((i, j));
    }
    path
}

/// Indices left after contracting terms `i` and `j`: those the output or another term needs.
fn pair_result(terms: &[Vec<char>], i: usize, j: usize, output: &[char]) -> Vec<char> {
    let needed = |c: &char| output.contains(c) || terms.iter().enumerate().any(|(k, t)| k != i && k != j && t.contains(c));
    let mut res: Vec<char> = Vec::new();
    for c in terms[i].iter().chain(&terms[j]) {
        if needed(c) && !res.contains(c) {
            res.push(*c);
        }
    }
    res
}

/// Product of the sizes of all indices in `idx` times MLX's/NumPy's op factor.
fn flops(idx: &[char], inner: bool, num_terms: usize, sizes: &BTreeMap<char, usize>) -> u128 {
    let overall: u128 = idx.iter().map(|c| sizes[c] as u128).product();
    let factor = (num_terms.saturating_sub(1)).max(1) as u128 + inner as u128;
    overall * factor
}

fn unique(cs: impl IntoIterator<Item = char>) -> Vec<char> {
    let mut v: Vec<char> = Vec::new();
    for c in cs {
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}

/// Einstein summation over `operands` as described by `subscripts`.
#[track_caller]
pub fn einsum(subscripts: &str, operands: &[Array]) -> Array {
    Array::build(|| {
        if operands.is_empty() {
            return Err(err("At least one operand is required."));
        }
        let shapes: Vec<&[usize]> = operands.iter().map(|a| a.shape()).collect();
        let eq = parse(subscripts, &shapes)?;
        let dt = operands.iter().skip(1).fold(operands[0].dtype(), |d, a| promote_types(d, a.dtype()));
        let mut terms: Vec<Term> = operands.iter().zip(&eq.inputs).map(|(a, idx)| Term { a: a.astype(dt), idx: idx.clone() }).collect();
        for (i, j) in greedy_path(&eq.inputs, &eq.output, &eq.sizes) {
            let others: Vec<Vec<char>> = terms.iter().enumerate().filter(|(k, _)| *k != i && *k != j).map(|(_, t)| t.idx.clone()).collect();
            let (out, sizes) = (&eq.output, &eq.sizes);
            let needed = |c: char| out.contains(&c) || others.iter().any(|t| t.contains(&c));
            let y = terms.remove(j);
            let x = terms.remove(i);
            let (ix, iy) = (x.idx.clone(), y.idx.clone());
            let x = prepare(x, sizes, &|c| needed(c) || iy.contains(&c));
            let y = prepare(y, sizes, &|c| needed(c) || ix.contains(&c));
            terms.push(contract(x, y, sizes, &needed));
        }
        let t = terms.pop().unwrap();
        let t = prepare(t, &eq.sizes, &|c| eq.output.contains(&c));
        let perm: Vec<isize> = eq.output.iter().map(|c| t.idx.iter().position(|d| d == c).unwrap() as isize).collect();
        Ok(if perm.iter().enumerate().all(|(i, &p)| i as isize == p) { t.a } else { super::transpose(&t.a, &perm) })
    })
}

/// The contraction order `einsum` uses and a report of its cost, as MLX's `einsum_path`.
pub fn einsum_path(subscripts: &str, operands: &[Array]) -> Result<(Vec<(usize, usize)>, String)> {
    let shapes: Vec<&[usize]> = operands.iter().map(|a| a.shape()).collect();
    let eq = parse(subscripts, &shapes)?;
    let path = greedy_path(&eq.inputs, &eq.output, &eq.sizes);
    let all = unique(eq.inputs.iter().flatten().copied());
    let inner = all.iter().any(|c| !eq.output.contains(c));
    let naive = flops(&all, inner, eq.inputs.len(), &eq.sizes);
    let mut terms = eq.inputs.clone();
    let (mut opt, mut scaling) = (0u128, 0usize);
    for &(i, j) in &path {
        let res = pair_result(&terms, i, j, &eq.output);
        let involved = unique(terms[i].iter().chain(&terms[j]).copied());
        let inner = involved.iter().any(|c| !res.contains(c));
        opt += flops(&involved, inner, 2, &eq.sizes);
        scaling = scaling.max(involved.len());
        terms.remove(j);
        terms.remove(i);
        terms.push(res);
    }
    if path.is_empty() {
        opt = naive;
        scaling = all.len();
    }
    let shown = |cs: &[char]| -> String { cs.iter().map(|&c| if c as u32 >= 0xE000 { '.' } else { c }).collect() };
    let eqn = format!("{}->{}", eq.inputs.iter().map(|i| shown(i)).collect::<Vec<_>>().join(","), shown(&eq.output));
    let info = format!(
        "  Complete contraction:  {eqn}\n         Naive scaling:  {}\n     Optimized scaling:  {scaling}\n      Naive FLOP count:  {naive}\n  Optimized FLOP count:  {opt}\n",
        all.len()
    );
    Ok((path, info))
}
