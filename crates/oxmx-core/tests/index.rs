//! Indexing against NumPy (fixtures from scripts/gen_index_fixtures.py) and error cases.

use oxmx_core::ops::index::Idx;
use oxmx_core::prelude::*;
use oxmx_core::{ops::*, ErrorKind};
use serde_json::Value;

fn decode(v: &Value) -> Array {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data = v["data"].as_array().unwrap();
    match v["dtype"].as_str().unwrap() {
        "float32" => Array::from_slice(&data.iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>(), &shape),
        "int32" => Array::from_slice(&data.iter().map(|x| x.as_i64().unwrap() as i32).collect::<Vec<_>>(), &shape),
        d => panic!("fixture dtype {d}"),
    }
}

fn decode_index(items: &Value) -> Vec<Idx> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            let it = it.as_array().unwrap();
            match it[0].as_str().unwrap() {
                "int" => Idx::At(it[1].as_i64().unwrap() as isize),
                "new" => Idx::NewAxis,
                "ellipsis" => Idx::Ellipsis,
                "slice" => {
                    let p = it[1].as_array().unwrap();
                    let g = |v: &Value| v.as_i64().map(|x| x as isize);
                    Idx::Slice(SliceSpec::new(g(&p[0]), g(&p[1]), g(&p[2]).unwrap_or(1)))
                }
                "array" => {
                    fn flat(v: &Value, out: &mut Vec<i32>, shape: &mut Vec<usize>, depth: usize) {
                        match v.as_array() {
                            Some(a) => {
                                if shape.len() == depth {
                                    shape.push(a.len());
                                }
                                a.iter().for_each(|x| flat(x, out, shape, depth + 1));
                            }
                            None => out.push(v.as_i64().unwrap() as i32),
                        }
                    }
                    let (mut data, mut shape) = (vec![], vec![]);
                    flat(&it[1], &mut data, &mut shape, 0);
                    Idx::Array(Array::from_slice(&data, &shape))
                }
                k => panic!("index kind {k}"),
            }
        })
        .collect()
}

fn assert_same(got: &Array, want: &Array, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap(), "{what}: values");
}

#[test]
fn indexing_matches_numpy() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/index.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for (n, c) in cases.iter().enumerate() {
        let x = decode(&c["x"]);
        let want = decode(&c["expected"]);
        let axis = c.get("axis").and_then(|a| a.as_i64()).map(|a| a as isize);
        let kind = c["kind"].as_str().unwrap();
        let got = match kind {
            "index" => x.index(&decode_index(&c["index"])),
            "set" => x.set(&decode_index(&c["index"]), &decode(&c["values"])),
            "add" => index_add(&x, &decode_index(&c["index"]), &decode(&c["values"])),
            "take" => take(&x, &decode(&c["indices"]), axis),
            "take_along_axis" => take_along_axis(&x, &decode(&c["indices"]), axis),
            "put_along_axis" => put_along_axis(&x, &decode(&c["indices"]), &decode(&c["values"]), axis),
            k => panic!("kind {k}"),
        };
        if kind == "add" {
            // Accumulation order may differ from NumPy's: compare within float tolerance.
            let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
            assert_eq!(got.shape(), want.shape());
            for (a, b) in g.iter().zip(&w) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "case {n} ({kind}): {a} vs {b}");
            }
        } else {
            assert_same(&got, &want, &format!("case {n} ({kind})"));
        }
    }
}

#[test]
fn index_views_of_transposed_input() {
    // Gather must honour the input's strides: index a transposed view and compare with the copy.
    let x = reshape(&arange(0.0, 24.0, 1.0, Some(Dtype::Float32)), &[4, 6]);
    let t = transpose(&x, &[]);
    let idx = Array::vec(&[5i32, 0, 3]);
    let a = take(&t, &idx, Some(0));
    let b = take(&contiguous(&t), &idx, Some(0));
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
}

#[test]
fn index_errors() {
    let x = zeros(&[3, 4], Dtype::Float32);
    let e = x.index(&[Idx::At(3)]).check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IndexOutOfRange);
    // Too many indices: MLX raises ValueError (not IndexError) for this.
    let e = x.index(&[Idx::At(0), Idx::At(0), Idx::At(0)]).check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // Out-of-range index arrays fail at evaluation with an index error, not a wild read.
    let r = take(&x, &Array::vec(&[0i32, 7]), Some(1)).eval().unwrap_err();
    assert_eq!(r.kind(), ErrorKind::IndexOutOfRange, "{r}");
    let e = take(&x, &Array::vec(&[0.5f32]), Some(1)).check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = take(&x, &Array::vec(&[0i32]), Some(2)).check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IndexOutOfRange);
    // Indexing an array whose evaluation failed passes the error on (it used to panic).
    let bad = x.set(&[Idx::Array(Array::vec(&[1u8, 7]))], &zeros(&[], Dtype::Float32));
    assert!(bad.eval().is_err());
    assert!(bad.index(&[Idx::At(-1)]).check().is_err());
    assert!(bad.set(&[Idx::At(0)], &zeros(&[], Dtype::Float32)).check().is_err());
}
