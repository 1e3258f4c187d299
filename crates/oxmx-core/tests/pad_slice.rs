//! Pad modes against NumPy/MLX and dynamic slice / slice_update against MLX (fixtures from
//! scripts/gen_pad_slice_fixtures.py), plus the clamping oxmx adds for out-of-range starts.

use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pad_slice.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn isizes(v: &Value) -> Vec<isize> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as isize).collect()
}

#[test]
fn pad_modes_match_numpy() {
    for c in fixtures()["pad"].as_array().unwrap() {
        let a = Array::from_slice(&ints(&c["data"]), &usizes(&c["shape"]));
        let widths: Vec<(usize, usize)> =
            c["widths"].as_array().unwrap().iter().map(|w| (w[0].as_u64().unwrap() as usize, w[1].as_u64().unwrap() as usize)).collect();
        let mode = match c["mode"].as_str().unwrap() {
            "reflect" => PadMode::Reflect,
            "symmetric" => PadMode::Symmetric,
            _ => PadMode::Edge,
        };
        let r = pad(&a, &widths, mode);
        let what = format!("pad {:?} {widths:?} {}", a.shape(), c["mode"]);
        assert_eq!(r.shape(), usizes(&c["out_shape"]).as_slice(), "{what}");
        assert_eq!(r.to_vec::<i32>().unwrap(), ints(&c["out"]), "{what}");
        // The same on a transposed view.
        if a.ndim() == 2 {
            let t = transpose(&transpose(&a, &[]).astype(Dtype::Int32), &[]);
            assert_eq!(pad(&t, &widths, PadMode::Symmetric).shape(), pad(&a, &widths, PadMode::Symmetric).shape());
        }
    }
    assert!(pad(&zeros(&[0, 2], Dtype::Float32), &[(1, 1), (0, 0)], PadMode::Reflect).check().is_err());
    assert!(pad(&zeros(&[2, 2], Dtype::Float32), &[(1, 1)], PadMode::Symmetric).check().is_err());
}

#[test]
fn dynamic_slice_matches_mlx() {
    for c in fixtures()["slice"].as_array().unwrap() {
        let a = Array::from_slice(&ints(&c["data"]), &usizes(&c["shape"]));
        let start = Array::vec(&ints(&c["start"]));
        let size = usizes(&c["size"]);
        let r = slice_dynamic(&a, &start, &isizes(&c["axes"]), &size);
        assert_eq!(r.shape(), size.as_slice());
        assert_eq!(r.to_vec::<i32>().unwrap(), ints(&c["out"]), "slice {:?} start {} axes {}", a.shape(), c["start"], c["axes"]);
    }
    // Out-of-range starts are clamped so the slice fits (MLX reads out of bounds here).
    let a = Array::from_slice(&(0..12).collect::<Vec<i32>>(), &[3, 4]);
    let r = slice_dynamic(&a, &Array::vec(&[5i32, -3]), &[0, 1], &[2, 2]);
    let want = slice(&a, &[SliceSpec::new(Some(1), Some(3), 1), SliceSpec::new(Some(0), Some(2), 1)]);
    assert_eq!(r.to_vec::<i32>().unwrap(), want.to_vec::<i32>().unwrap());
    assert!(slice_dynamic(&a, &Array::vec(&[0.5f32]), &[0], &[1, 4]).check().is_err());
    assert!(slice_dynamic(&a, &Array::vec(&[0i32, 1]), &[0], &[1, 4]).check().is_err());
    assert!(slice_dynamic(&a, &Array::vec(&[0i32]), &[0], &[4, 4]).check().is_err());
    assert!(slice_dynamic(&a, &Array::vec(&[0i32]), &[2], &[1, 4]).check().is_err());
}

#[test]
fn dynamic_slice_update_matches_mlx() {
    for c in fixtures()["slice_update"].as_array().unwrap() {
        let a = Array::from_slice(&ints(&c["data"]), &usizes(&c["shape"]));
        let u = Array::from_slice(&ints(&c["update"]), &usizes(&c["ushape"]));
        let r = slice_update_dynamic(&a, &u, &Array::vec(&ints(&c["start"])), &isizes(&c["axes"]));
        assert_eq!(r.shape(), a.shape());
        assert_eq!(r.to_vec::<i32>().unwrap(), ints(&c["out"]), "slice_update {:?} {:?} start {}", a.shape(), u.shape(), c["start"]);
    }
    // Clamped like slice_dynamic: the same result as the static update at the clamped start.
    let a = Array::from_slice(&(0..12).collect::<Vec<i32>>(), &[3, 4]);
    let u = Array::from_slice(&[100i32, 101, 102, 103], &[2, 2]);
    let r = slice_update_dynamic(&a, &u, &Array::vec(&[9i32, 3]), &[0, 1]);
    let want = slice_update(&a, &u, &[SliceSpec::new(Some(1), Some(3), 1), SliceSpec::new(Some(2), Some(4), 1)]);
    assert_eq!(r.to_vec::<i32>().unwrap(), want.to_vec::<i32>().unwrap());
    assert!(slice_update_dynamic(&a, &zeros(&[4, 1], Dtype::Int32), &Array::vec(&[0i32]), &[0]).check().is_err());
}
