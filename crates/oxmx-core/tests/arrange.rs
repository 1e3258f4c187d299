//! repeat/tile/roll/flip/diag/diagonal/trace/pad against NumPy (scripts/gen_arrange_fixtures.py).

use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use serde_json::Value;

fn decode(v: &Value) -> Array {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f32> = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    Array::from_slice(&data, &shape)
}

#[test]
fn arrange_ops_match_numpy() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/arrange.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 50);
    for (n, c) in cases.iter().enumerate() {
        let x = decode(&c["x"]);
        let want = decode(&c["expected"]);
        let i = |k: &str| c[k].as_i64().map(|v| v as isize);
        let op = c["op"].as_str().unwrap();
        let got = match op {
            "repeat" => repeat(&x, c["repeats"].as_u64().unwrap() as usize, i("axis")),
            "roll" => roll(&x, i("shift").unwrap(), i("axis")),
            "tile" => tile(&x, &c["reps"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap() as usize).collect::<Vec<_>>()),
            "flip" => flip(&x, &c["axes"].as_array().unwrap().iter().map(|r| r.as_i64().unwrap() as isize).collect::<Vec<_>>()),
            "pad_edge" => {
                let w: Vec<(usize, usize)> = c["widths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
                    .collect();
                pad(&x, &w, PadMode::Edge)
            }
            "diagonal" => diagonal(&x, i("offset").unwrap(), i("axis1").unwrap(), i("axis2").unwrap()),
            "trace" => trace(&x, i("offset").unwrap(), i("axis1").unwrap(), i("axis2").unwrap(), None),
            "diag" => diag(&x, i("offset").unwrap()),
            o => panic!("op {o}"),
        };
        assert_eq!(got.shape(), want.shape(), "case {n} {op}");
        let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "case {n} {op}: {a} vs {b}");
        }
    }
}

#[test]
fn arrange_ops_on_views_and_errors() {
    let x = transpose(&reshape(&arange(0.0, 12.0, 1.0, Some(Dtype::Float32)), &[3, 4]), &[]);
    assert_eq!(diagonal(&x, 0, 0, 1).to_vec::<f32>().unwrap(), diagonal(&contiguous(&x), 0, 0, 1).to_vec::<f32>().unwrap());
    assert!(diagonal(&x, 0, 0, 0).check().is_err());
    assert!(repeat(&x, 2, Some(5)).check().is_err());
    assert!(diag(&zeros(&[2, 2, 2], Dtype::Float32), 0).check().is_err());
}
