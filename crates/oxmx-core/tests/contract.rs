//! einsum / einsum_path, median, gather_mm and block_masked_mm against MLX (NumPy for integer
//! einsums), fixtures from scripts/gen_contract_fixtures.py.

use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contract.json");
        serde_json::from_str(&std::fs::read_to_string(p).expect("fixture file")).expect("fixture json")
    })
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        v => v.as_f64().unwrap(),
    }
}

fn dtype(name: &str) -> Dtype {
    match name {
        "float32" => Dtype::Float32,
        "float16" => Dtype::Float16,
        "bfloat16" => Dtype::Bfloat16,
        "int32" => Dtype::Int32,
        "int64" => Dtype::Int64,
        "uint32" => Dtype::Uint32,
        "bool" => Dtype::Bool,
        d => panic!("dtype {d}"),
    }
}

fn tensor(t: &Value) -> Array {
    let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = t["data"].as_array().unwrap().iter().map(num).collect();
    Array::from_slice(&data, &shape).astype(dtype(t["dtype"].as_str().unwrap()))
}

fn opt_tensor(t: &Value) -> Option<Array> {
    (!t.is_null()).then(|| tensor(t))
}

fn assert_close(what: &str, got: &Array, want: &Value) {
    got.check().unwrap_or_else(|e| panic!("{what}: {e}"));
    let dt = dtype(want["dtype"].as_str().unwrap());
    let shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    assert_eq!(got.shape(), shape.as_slice(), "{what}: shape");
    // Integer einsums: MLX refuses integer matmul, NumPy gives int64 where we keep int32.
    let int_ok = dt.is_integer() && got.dtype().is_integer();
    assert!(got.dtype() == dt || int_ok, "{what}: dtype {} != {dt}", got.dtype());
    let g = got.astype(Dtype::Float64).to_vec::<f64>().unwrap();
    let (rtol, atol) = match dt {
        Dtype::Float16 => (2e-3, 2e-3),
        Dtype::Float32 => (1e-5, 1e-5),
        _ => (0.0, 0.0),
    };
    for (i, (&g, e)) in g.iter().zip(want["data"].as_array().unwrap()).enumerate() {
        let e = num(e);
        let ok = if e.is_nan() { g.is_nan() } else { (g - e).abs() <= atol + rtol * e.abs() };
        assert!(ok, "{what}: element {i}: got {g}, expected {e}");
    }
}

#[test]
fn einsum_matches_mlx_and_numpy() {
    for c in fixtures()["einsum"].as_array().unwrap() {
        let sub = c["subscripts"].as_str().unwrap();
        let ins: Vec<Array> = c["inputs"].as_array().unwrap().iter().map(tensor).collect();
        let r = einsum(sub, &ins);
        assert_close(&format!("einsum {sub} {:?}", ins.iter().map(|a| a.shape().to_vec()).collect::<Vec<_>>()), &r, &c["out"]);
    }
}

#[test]
fn einsum_on_views() {
    // Transposed and broadcast operands give the same result as their contiguous copies.
    let a = Array::from_slice(&(0..12).map(|v| v as f32).collect::<Vec<_>>(), &[3, 4]);
    let b = Array::from_slice(&(0..20).map(|v| (v as f32) * 0.5).collect::<Vec<_>>(), &[5, 4]);
    let bt = transpose(&b, &[]);
    let r = einsum("ij,jk->ik", &[a.clone(), bt.clone()]);
    let want = matmul(&a, &bt);
    assert_eq!(r.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
}

#[test]
fn einsum_path_matches_mlx() {
    for c in fixtures()["einsum_path"].as_array().unwrap() {
        let sub = c["subscripts"].as_str().unwrap();
        let ops: Vec<Array> = c["shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| zeros(&s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect::<Vec<_>>(), Dtype::Float32))
            .collect();
        let (path, info) = einsum_path(sub, &ops).unwrap();
        let want: Vec<(usize, usize)> =
            c["path"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize)).collect();
        assert_eq!(path, want, "path of {sub}");
        assert_eq!(info, c["info"].as_str().unwrap(), "info of {sub}");
    }
}

#[test]
fn einsum_errors() {
    let a = zeros(&[2, 3], Dtype::Float32);
    for (sub, n) in [("ij,jk->ik", 1), ("ijk->i", 1), ("ij->k", 1), ("ij->ii", 1), ("i1->i", 1), ("ij,ij->i", 2)] {
        let ops = vec![a.clone(); n];
        let ops = if sub == "ij,ij->i" { vec![a.clone(), zeros(&[2, 4], Dtype::Float32)] } else { ops };
        let e = einsum(sub, &ops).check();
        assert!(e.is_err(), "{sub} should fail");
        assert!(e.unwrap_err().to_string().contains("[einsum]"));
    }
    assert!(einsum("ij", &[]).check().is_err());
}

#[test]
fn median_matches_mlx() {
    for c in fixtures()["median"].as_array().unwrap() {
        let a = tensor(&c["input"]);
        let axes: Axes = match c["axis"].as_array() {
            None => Axes::All,
            Some(v) => Axes::List(v.iter().map(|x| x.as_i64().unwrap() as isize).collect()),
        };
        let r = median(&a, axes, c["keepdims"].as_bool().unwrap());
        assert_close(&format!("median {:?} {}", a.shape(), c["axis"]), &r, &c["out"]);
    }
    assert!(median(&zeros(&[0, 3], Dtype::Float32), 0isize, false).check().is_err());
    assert!(median(&zeros(&[2, 3], Dtype::Float32), 2isize, false).check().is_err());
}

#[test]
fn gather_mm_matches_mlx() {
    for c in fixtures()["gather_mm"].as_array().unwrap() {
        let (a, b) = (tensor(&c["a"]), tensor(&c["b"]));
        let (l, r) = (opt_tensor(&c["lhs"]), opt_tensor(&c["rhs"]));
        let out = gather_mm(&a, &b, l.as_ref(), r.as_ref(), false);
        assert_close(&format!("gather_mm {:?} {:?}", a.shape(), b.shape()), &out, &c["out"]);
    }
    let a = zeros(&[3, 4, 5], Dtype::Float32);
    assert!(gather_mm(&a, &zeros(&[2, 5, 6], Dtype::Float32), Some(&Array::vec(&[0.5f32])), None, false).check().is_err());
    assert!(gather_mm(&a, &zeros(&[2, 4, 6], Dtype::Float32), Some(&Array::vec(&[0u32])), None, false).check().is_err());
}

#[test]
fn block_masked_mm_matches_mlx() {
    for c in fixtures()["block_masked_mm"].as_array().unwrap() {
        let (a, b) = (tensor(&c["a"]), tensor(&c["b"]));
        let (mo, ml, mr) = (opt_tensor(&c["mask_out"]), opt_tensor(&c["mask_lhs"]), opt_tensor(&c["mask_rhs"]));
        let bs = c["block_size"].as_u64().unwrap() as usize;
        let out = block_masked_mm(&a, &b, bs, mo.as_ref(), ml.as_ref(), mr.as_ref());
        assert_close(&format!("block_masked_mm {:?} {:?} bs {bs}", a.shape(), b.shape()), &out, &c["out"]);
    }
    let a = zeros(&[40, 40], Dtype::Float32);
    assert!(block_masked_mm(&a, &a, 16, None, None, None).check().is_err());
    let bad = Array::from_slice(&[true; 4], &[1, 4]);
    assert!(block_masked_mm(&a, &a, 32, Some(&bad), None, None).check().is_err());
}
