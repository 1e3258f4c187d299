//! Sorting, random and matmul families.

use oxmx_core::ops::*;
use oxmx_core::prelude::*;

/// A small deterministic generator for test inputs.
fn lcg(n: usize, seed: u64, modulo: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % modulo) as f32 - (modulo / 2) as f32
        })
        .collect()
}

fn ref_sort(v: &[f32]) -> Vec<f32> {
    let mut r = v.to_vec();
    r.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(b).unwrap(),
    });
    r
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.is_nan() && y.is_nan()) || x == y)
}

#[test]
fn sort_basic_and_nan_last() {
    let a = Array::vec(&[3.0f32, f32::NAN, -1.0, 2.0, f32::NEG_INFINITY, 0.5]);
    let s = sort(&a, Some(-1)).to_vec::<f32>().unwrap();
    assert!(same(&s, &[f32::NEG_INFINITY, -1.0, 0.5, 2.0, 3.0, f32::NAN]));
    let i = argsort(&a, Some(-1));
    assert_eq!(i.dtype(), Dtype::Uint32);
    assert_eq!(i.to_vec::<u32>().unwrap(), vec![4, 2, 5, 3, 0, 1]);
}

#[test]
fn sort_axes_and_flatten() {
    // shape [2, 3]
    let a = Array::from_slice(&[5i32, 1, 4, 2, 6, 3], &[2, 3]);
    assert_eq!(sort(&a, Some(0)).to_vec::<i32>().unwrap(), vec![2, 1, 3, 5, 6, 4]);
    assert_eq!(sort(&a, Some(1)).to_vec::<i32>().unwrap(), vec![1, 4, 5, 2, 3, 6]);
    assert_eq!(argsort(&a, Some(0)).to_vec::<u32>().unwrap(), vec![1, 0, 1, 0, 1, 0]);
    let f = sort(&a, None);
    assert_eq!(f.shape(), &[6]);
    assert_eq!(f.to_vec::<i32>().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(argsort(&a, None).to_vec::<u32>().unwrap(), vec![1, 3, 5, 2, 0, 4]);
    // Transposed (non-contiguous) input.
    let t = transpose(&a, &[]);
    assert_eq!(sort(&t, Some(-1)).to_vec::<i32>().unwrap(), vec![2, 5, 1, 6, 3, 4]);
    // Errors.
    assert!(sort(&a, Some(2)).check().is_err());
    assert!(partition(&a, 3, Some(1)).check().is_err());
}

#[test]
fn argsort_is_stable() {
    let a = Array::vec(&[1i32, 0, 1, 0, 1, 0, 2, 0]);
    assert_eq!(argsort(&a, Some(0)).to_vec::<u32>().unwrap(), vec![1, 3, 5, 7, 0, 2, 4, 6]);
    // Large, many duplicates, parallel path.
    let v = lcg(200_000, 7, 50);
    let x = Array::from_slice(&v, &[100, 2000]);
    let idx = argsort(&x, Some(1)).to_vec::<u32>().unwrap();
    for r in 0..100 {
        let row = &v[r * 2000..(r + 1) * 2000];
        let ix = &idx[r * 2000..(r + 1) * 2000];
        for w in ix.windows(2) {
            let (a, b) = (row[w[0] as usize], row[w[1] as usize]);
            assert!(a < b || (a == b && w[0] < w[1]));
        }
    }
}

#[test]
fn sort_large_dtypes() {
    let v = lcg(300_000, 3, 1000);
    let x = Array::from_slice(&v, &[300, 1000]);
    let s = sort(&x, Some(-1)).to_vec::<f32>().unwrap();
    for r in 0..300 {
        assert!(same(&s[r * 1000..(r + 1) * 1000], &ref_sort(&v[r * 1000..(r + 1) * 1000])));
    }
    // Along axis 0 too.
    let s0 = sort(&x, Some(0));
    let t = transpose(&s0, &[]).to_vec::<f32>().unwrap();
    for c in 0..1000 {
        let col: Vec<f32> = (0..300).map(|r| v[r * 1000 + c]).collect();
        assert!(same(&t[c * 300..(c + 1) * 300], &ref_sort(&col)));
    }
    for dt in [Dtype::Float16, Dtype::Bfloat16, Dtype::Float64, Dtype::Int8, Dtype::Uint16, Dtype::Int64] {
        let small: Vec<f32> = lcg(64, 11, 100).into_iter().map(|x| if dt == Dtype::Uint16 { x + 50.0 } else { x }).collect();
        let a = Array::vec(&small).astype(dt);
        let s = sort(&a, Some(0));
        assert_eq!(s.dtype(), dt);
        assert_eq!(s.to_vec::<f32>().unwrap(), ref_sort(&small), "{dt:?}");
    }
}

fn check_partition(v: &[f32], p: &[f32], k: usize) {
    let sorted = ref_sort(v);
    assert_eq!(p[k], sorted[k]);
    assert!(p[..k].iter().all(|&x| x <= p[k]));
    assert!(p[k + 1..].iter().all(|&x| x >= p[k]));
    assert_eq!(ref_sort(p), sorted);
}

#[test]
fn partition_and_argpartition() {
    let v = lcg(4 * 501, 5, 40);
    let x = Array::from_slice(&v, &[4, 501]);
    for kth in [0isize, 1, 250, 500, -1, -3] {
        let k = if kth < 0 { (501 + kth) as usize } else { kth as usize };
        let p = partition(&x, kth, Some(-1)).to_vec::<f32>().unwrap();
        let ip = argpartition(&x, kth, Some(-1)).to_vec::<u32>().unwrap();
        for r in 0..4 {
            let row = &v[r * 501..(r + 1) * 501];
            check_partition(row, &p[r * 501..(r + 1) * 501], k);
            let gathered: Vec<f32> = ip[r * 501..(r + 1) * 501].iter().map(|&i| row[i as usize]).collect();
            check_partition(row, &gathered, k);
        }
    }
    // Along axis 0 of a transposed view.
    let xt = transpose(&x, &[]);
    let p = partition(&xt, 2, Some(0));
    assert_eq!(p.shape(), &[501, 4]);
    let pt = transpose(&p, &[]).to_vec::<f32>().unwrap();
    for r in 0..4 {
        check_partition(&v[r * 501..(r + 1) * 501], &pt[r * 501..(r + 1) * 501], 2);
    }
}

#[test]
fn topk_returns_largest() {
    let v = lcg(3 * 100, 9, 1000);
    let x = Array::from_slice(&v, &[3, 100]);
    let t = topk(&x, 5, Some(-1));
    assert_eq!(t.shape(), &[3, 5]);
    let tv = t.to_vec::<f32>().unwrap();
    for r in 0..3 {
        let mut got = tv[r * 5..(r + 1) * 5].to_vec();
        got = ref_sort(&got);
        let want = ref_sort(&v[r * 100..(r + 1) * 100])[95..].to_vec();
        assert_eq!(got, want);
    }
    let f = topk(&x, 3, None);
    assert_eq!(f.shape(), &[3]);
    assert_eq!(ref_sort(&f.to_vec::<f32>().unwrap()), ref_sort(&v)[297..].to_vec());
    assert_eq!(topk(&x, 0, Some(1)).shape(), &[3, 0]);
    assert!(topk(&x, 101, Some(1)).check().is_err());
}

// ---------------------------------------------------------------------------------------------
// random (fixtures from scripts/gen_random_fixtures.py, produced by MLX)

mod rnd {
    use oxmx_core::prelude::*;
    use oxmx_core::random;
    use serde_json::Value;

    fn fixtures() -> Value {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/random.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
    fn us(v: &Value) -> Vec<usize> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
    }
    fn u32s(v: &Value) -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    }
    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }
    fn key_of(c: &Value) -> Array {
        random::key(c["seed"].as_u64().unwrap())
    }
    fn bits_of(a: &Array) -> Vec<u32> {
        a.to_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
    }
    fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn key_and_split_match_mlx() {
        let f = fixtures();
        for c in f["keys"].as_array().unwrap() {
            let seed: u64 = c["seed"].as_str().unwrap().parse().unwrap();
            let k = random::key(seed);
            assert_eq!(k.dtype(), Dtype::Uint32);
            assert_eq!(k.to_vec::<u32>().unwrap(), u32s(&c["key"]), "key({seed})");
        }
        for c in f["splits"].as_array().unwrap() {
            let num = c["num"].as_u64().unwrap() as usize;
            let s = random::split(&key_of(c), num);
            assert_eq!(s.shape(), &[num, 2]);
            assert_eq!(s.to_vec::<u32>().unwrap(), u32s(&c["keys"]), "split {c}");
        }
    }

    #[test]
    fn uniform_matches_mlx_bitwise() {
        for c in fixtures()["uniform"].as_array().unwrap() {
            let shape = us(&c["shape"]);
            let u = random::uniform(c["low"].as_f64().unwrap(), c["high"].as_f64().unwrap(), &shape, Dtype::Float32, Some(&key_of(c)));
            assert_eq!(u.shape(), shape.as_slice());
            assert_eq!(bits_of(&u), u32s(&c["bits"]), "uniform {}", c["seed"]);
        }
    }

    #[test]
    fn normal_matches_mlx() {
        let mut exact = 0;
        let mut total = 0;
        for c in fixtures()["normal"].as_array().unwrap() {
            let shape = us(&c["shape"]);
            let n = random::normal(&shape, Dtype::Float32, c["loc"].as_f64().unwrap(), c["scale"].as_f64().unwrap(), Some(&key_of(c)));
            let want: Vec<f32> = u32s(&c["bits"]).into_iter().map(f32::from_bits).collect();
            let got = n.to_vec::<f32>().unwrap();
            exact += got.iter().zip(&want).filter(|(g, w)| g.to_bits() == w.to_bits()).count();
            total += want.len();
            close(&got, &want, 2e-6, "normal");
        }
        eprintln!("normal: {exact}/{total} bit-identical to MLX");
    }

    #[test]
    fn derived_samplers_match_mlx() {
        let f = fixtures();
        for c in f["randint"].as_array().unwrap() {
            let r =
                random::randint(c["low"].as_i64().unwrap(), c["high"].as_i64().unwrap(), &us(&c["shape"]), Dtype::Int32, Some(&key_of(c)));
            let want: Vec<i64> = c["values"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(r.to_vec::<i64>().unwrap(), want, "randint");
        }
        for c in f["bernoulli"].as_array().unwrap() {
            let b = random::bernoulli(c["p"].as_f64().unwrap(), &us(&c["shape"]), Some(&key_of(c)));
            assert_eq!(b.dtype(), Dtype::Bool);
            let want: Vec<bool> = c["values"].as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect();
            assert_eq!(b.to_vec::<bool>().unwrap(), want, "bernoulli");
        }
        for c in f["gumbel"].as_array().unwrap() {
            let g = random::gumbel(&us(&c["shape"]), Dtype::Float32, Some(&key_of(c)));
            close(&g.to_vec::<f32>().unwrap(), &f32s(&c["values"]), 1e-5, "gumbel");
        }
        for c in f["laplace"].as_array().unwrap() {
            let l = random::laplace(
                &us(&c["shape"]),
                Dtype::Float32,
                c["loc"].as_f64().unwrap(),
                c["scale"].as_f64().unwrap(),
                Some(&key_of(c)),
            );
            close(&l.to_vec::<f32>().unwrap(), &f32s(&c["values"]), 1e-5, "laplace");
        }
        for c in f["truncated_normal"].as_array().unwrap() {
            let (lo, hi) = (c["lower"].as_f64().unwrap(), c["upper"].as_f64().unwrap());
            let t = random::truncated_normal(lo, hi, &us(&c["shape"]), Dtype::Float32, Some(&key_of(c)));
            let got = t.to_vec::<f32>().unwrap();
            assert!(got.iter().all(|&x| x >= lo as f32 && x <= hi as f32));
            close(&got, &f32s(&c["values"]), 1e-4, "truncated_normal");
        }
        for c in f["permutation"].as_array().unwrap() {
            let p = random::permutation(c["n"].as_u64().unwrap() as usize, Some(&key_of(c)));
            assert_eq!(p.to_vec::<u32>().unwrap(), u32s(&c["values"]), "permutation");
        }
        for c in f["categorical"].as_array().unwrap() {
            let logits = Array::from_slice(&f32s(&c["logits"]), &us(&c["shape"]));
            let s = random::categorical(&logits, -1, None, Some(&key_of(c)));
            assert_eq!(s.to_vec::<u32>().unwrap(), u32s(&c["values"]), "categorical");
            let s3 = random::categorical(&logits, -1, Some(3), Some(&key_of(c)));
            assert_eq!(s3.shape(), &[3, 3]);
            assert_eq!(s3.to_vec::<u32>().unwrap(), u32s(&c["samples3"]), "categorical num_samples");
            let lt = oxmx_core::ops::transpose(&logits, &[]);
            let s30 = random::categorical(&lt, 0, Some(3), Some(&key_of(c)));
            assert_eq!(s30.shape(), &[3, 3]);
            assert_eq!(s30.to_vec::<u32>().unwrap(), u32s(&c["samples3_axis0"]), "categorical num_samples, axis 0");
        }
    }

    #[test]
    fn array_valued_parameters_match_mlx() {
        let c = &fixtures()["array_params"];
        let k = random::key(c["seed"].as_u64().unwrap());
        let shape = us(&c["shape"]);
        let lo = Array::vec(&f32s(&c["low"]));
        let hi = Array::from_slice(&f32s(&c["high"]), &[2, 1]);
        assert_eq!(bits_of(&random::uniform(&lo, &hi, &shape, Dtype::Float32, Some(&k))), u32s(&c["uniform"]), "uniform");
        // normal: within 2 ulp (erfinv differs from MLX's in the last bit for some inputs).
        for (g, w) in bits_of(&random::normal(&shape, Dtype::Float32, &lo, &hi, Some(&k))).iter().zip(u32s(&c["normal"])) {
            assert!((*g as i64 - w as i64).abs() <= 2, "normal: bits {g} vs {w}");
        }
        let r = random::randint(lo.astype(Dtype::Int32), &(hi.astype(Dtype::Int32) + 20), &shape, Dtype::Int32, Some(&k));
        let want: Vec<i32> = c["randint"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
        assert_eq!(r.to_vec::<i32>().unwrap(), want, "randint");
        let p = Array::vec(&[0.1f32, 0.5, 0.9]);
        let b = random::bernoulli(&p, &shape, Some(&k)).astype(Dtype::Int32).to_vec::<i32>().unwrap();
        let want: Vec<i32> = c["bernoulli"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
        assert_eq!(b, want, "bernoulli");
        let t = random::truncated_normal(&(&lo - 1.0), &hi, &shape, Dtype::Float32, Some(&k)).to_vec::<f32>().unwrap();
        for (g, w) in t.iter().zip(f32s(&c["truncated_normal"])) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "truncated_normal: {g} vs {w}");
        }
        // Parameters must broadcast to the sample shape.
        assert!(random::uniform(&Array::vec(&[0.0f32; 4]), 1.0, &shape, Dtype::Float32, Some(&k)).check().is_err());
    }

    #[test]
    fn global_seed_sequence_matches_mlx() {
        let f = fixtures();
        let c = &f["seed"][0];
        random::seed(c["seed"].as_u64().unwrap());
        for d in c["draws"].as_array().unwrap() {
            let u = random::uniform(0.0, 1.0, &us(&c["shape"]), Dtype::Float32, None);
            assert_eq!(bits_of(&u), u32s(d));
        }
    }

    #[test]
    fn sampler_statistics_and_dtypes() {
        let k = random::key(1234);
        let n = random::normal(&[200_000], Dtype::Float32, 0.0, 1.0, Some(&k)).to_vec::<f32>().unwrap();
        let mean = n.iter().map(|&x| x as f64).sum::<f64>() / n.len() as f64;
        let var = n.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
        let u = random::uniform(0.0, 1.0, &[4], Dtype::Float16, Some(&k));
        assert_eq!(u.dtype(), Dtype::Float16);
        assert!(random::uniform(0.0, 1.0, &[4], Dtype::Int32, Some(&k)).check().is_err());
        assert!(random::bits(&[3], Some(&Array::vec(&[1u32, 2, 3]))).check().is_err());
        let p = random::permutation(1000, Some(&k)).to_vec::<u32>().unwrap();
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        let cs = random::categorical(&Array::from_slice(&[0.0f32, 0.0, 0.0], &[1, 3]), -1, Some(7), Some(&k));
        assert_eq!(cs.shape(), &[1, 7]);
    }
}

// ---------------------------------------------------------------------------------------------
// matmul (against a naive loop in f64)

mod mm {
    use super::lcg;
    use oxmx_core::ops::*;
    use oxmx_core::prelude::*;

    /// Naive batched product of row-major inputs with (already broadcast-equal) batch count.
    fn naive(a: &[f64], b: &[f64], batch_a: &[usize], batch_b: &[usize], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for (&ba, &bb) in batch_a.iter().zip(batch_b) {
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0;
                    for p in 0..k {
                        s += a[ba * m * k + i * k + p] * b[bb * k * n + p * n + j];
                    }
                    out.push(s);
                }
            }
        }
        out
    }

    fn close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "[{i}] {g} vs {w}");
        }
    }

    fn f64s(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }

    #[test]
    fn matmul_shapes_dtypes_and_values() {
        for &(m, k, n) in &[(1, 1, 1), (3, 4, 5), (17, 33, 9), (128, 70, 130), (4, 0, 3), (0, 3, 2)] {
            let av = lcg(m * k, 1, 13);
            let bv = lcg(k * n, 2, 13);
            let want = naive(&f64s(&av), &f64s(&bv), &[0], &[0], m, k, n);
            let a = Array::from_slice(&av, &[m, k]);
            let b = Array::from_slice(&bv, &[k, n]);
            for dt in [Dtype::Float32, Dtype::Float64, Dtype::Float16, Dtype::Bfloat16, Dtype::Int32, Dtype::Int64] {
                let c = matmul(&a.astype(dt), &b.astype(dt));
                assert_eq!(c.shape(), &[m, n]);
                assert_eq!(c.dtype(), dt);
                let got = c.to_vec::<f64>().unwrap();
                let tol = match dt {
                    Dtype::Float16 | Dtype::Bfloat16 => 1e-2,
                    Dtype::Float32 => 1e-5,
                    _ => 1e-12,
                };
                if matches!(dt, Dtype::Float16 | Dtype::Bfloat16) {
                    // Half precision may accumulate in 16 bits: compare against the output scale.
                    let scale = want.iter().fold(1.0f64, |s, w| s.max(w.abs()));
                    got.iter().zip(&want).for_each(|(g, w)| assert!((g - w).abs() <= 2e-2 * scale, "{dt:?} {g} vs {w}"));
                } else {
                    close(&got, &want, tol);
                }
            }
        }
    }

    #[test]
    fn matmul_transposed_views_and_broadcast() {
        let (m, k, n) = (20, 30, 25);
        let av = lcg(m * k, 3, 21);
        let bv = lcg(k * n, 4, 21);
        let want = naive(&f64s(&av), &f64s(&bv), &[0], &[0], m, k, n);
        // a given as the transpose of a [k, m] array, b as the transpose of [n, k].
        let at: Vec<f32> = (0..k * m).map(|idx| av[(idx % m) * k + idx / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|idx| bv[(idx % k) * n + idx / k]).collect();
        let a = transpose(&Array::from_slice(&at, &[k, m]), &[]);
        let b = transpose(&Array::from_slice(&bt, &[n, k]), &[]);
        close(&matmul(&a, &b).to_vec::<f64>().unwrap(), &want, 1e-5);
        close(&matmul(&a.astype(Dtype::Float64), &b.astype(Dtype::Float64)).to_vec::<f64>().unwrap(), &want, 1e-12);
        close(&matmul(&a.astype(Dtype::Int32), &b.astype(Dtype::Int32)).to_vec::<f64>().unwrap(), &want, 0.0);

        // Batch broadcasting: [2, 1, m, k] @ [3, k, n] -> [2, 3, m, n].
        let (m, k, n) = (5, 7, 6);
        let av = lcg(2 * m * k, 5, 11);
        let bv = lcg(3 * k * n, 6, 11);
        let a = Array::from_slice(&av, &[2, 1, m, k]);
        let b = Array::from_slice(&bv, &[3, k, n]);
        let c = matmul(&a, &b);
        assert_eq!(c.shape(), &[2, 3, m, n]);
        let want = naive(&f64s(&av), &f64s(&bv), &[0, 0, 0, 1, 1, 1], &[0, 1, 2, 0, 1, 2], m, k, n);
        close(&c.to_vec::<f64>().unwrap(), &want, 1e-5);
        // Many small batches (parallel over batches) with a broadcast right operand.
        let av = lcg(64 * 4 * 3, 7, 9);
        let bv = lcg(3 * 2, 8, 9);
        let c = matmul(&Array::from_slice(&av, &[64, 4, 3]), &Array::from_slice(&bv, &[3, 2]));
        let want = naive(&f64s(&av), &f64s(&bv), &(0..64).collect::<Vec<_>>(), &[0; 64], 4, 3, 2);
        close(&c.to_vec::<f64>().unwrap(), &want, 1e-5);
    }

    /// bf16 products large enough for the AMX path (when the CPU has it) against f32 products of
    /// the same bf16 values, rounded to bf16: at most one bf16 rounding step apart.
    #[test]
    fn bf16_matmul_large_matches_f32_reference() {
        for (batch, m, k, n, transpose_b) in [(1, 130, 200, 150, false), (2, 129, 257, 131, true), (1, 256, 64, 256, false)] {
            let a = Array::from_slice(&lcg(batch * m * k, 1, 17), &[batch, m, k]).astype(Dtype::Bfloat16) * 0.25;
            let b = if transpose_b {
                swapaxes(&Array::from_slice(&lcg(batch * k * n, 2, 17), &[batch, n, k]), -1, -2).astype(Dtype::Bfloat16) * 0.25
            } else {
                Array::from_slice(&lcg(batch * k * n, 2, 17), &[batch, k, n]).astype(Dtype::Bfloat16) * 0.25
            };
            let got = matmul(&a, &b);
            assert_eq!(got.dtype(), Dtype::Bfloat16);
            let want = matmul(&a.astype(Dtype::Float32), &b.astype(Dtype::Float32)).to_vec::<f32>().unwrap();
            let got = got.astype(Dtype::Float32).to_vec::<f32>().unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= w.abs() / 128.0 + 1e-3, "[{batch},{m},{k}]x[{k},{n}] element {i}: {g} vs {w}");
            }
        }
    }

    /// Few-row 16-bit products (the decode path that reads the weights once, in both layouts;
    /// bfloat16 with a transposed weight takes the BF16 dot-product kernel where the CPU has it:
    /// rows of 1 to 8, k with and without a masked tail) against f32 products of the same 16-bit
    /// values: one 16-bit rounding step apart.
    #[test]
    fn half_few_row_matmul_matches_f32_reference() {
        for dt in [Dtype::Bfloat16, Dtype::Float16] {
            for (m, k, n, transpose_b) in [
                (1, 1500, 70, true),
                (3, 64, 300, true),
                (8, 2100, 33, false),
                (1, 5, 600, false),
                (2, 1024, 1, true),
                (8, 200, 17, true),
                (5, 31, 9, true),
                (4, 4096, 40, true),
            ] {
                let a = Array::from_slice(&lcg(m * k, 3, 19), &[m, k]).astype(dt) * 0.25;
                let b = if transpose_b {
                    swapaxes(&Array::from_slice(&lcg(k * n, 4, 19), &[n, k]), -1, -2).astype(dt) * 0.25
                } else {
                    Array::from_slice(&lcg(k * n, 4, 19), &[k, n]).astype(dt) * 0.25
                };
                let got = matmul(&a, &b);
                assert_eq!((got.shape(), got.dtype()), (&[m, n][..], dt));
                let want = matmul(&a.astype(Dtype::Float32), &b.astype(Dtype::Float32)).to_vec::<f32>().unwrap();
                let got = got.astype(Dtype::Float32).to_vec::<f32>().unwrap();
                let ulp = if dt == Dtype::Bfloat16 { 1.0 / 128.0 } else { 1.0 / 1024.0 };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= w.abs() * ulp + 1e-3, "{dt:?} [{m},{k}]x[{k},{n}] t={transpose_b} element {i}: {g} vs {w}");
                }
                // Batch invariance of the decode kernels: each row of `a` gets the bits it gets
                // alone (a batched decode must give every sequence its own greedy tokens).
                if transpose_b {
                    for r in 0..m {
                        let row = slice_range(&a, &[r as isize, 0], &[r as isize + 1, k as isize]);
                        let alone = matmul(&row, &b).astype(Dtype::Float32).to_vec::<f32>().unwrap();
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&alone), bits(&got[r * n..(r + 1) * n]), "{dt:?} [{m},{k}]x[{k},{n}] row {r} alone");
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_vector_promotion_and_errors() {
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let v = Array::vec(&[1.0f32, 0.0, -1.0]);
        let w = Array::vec(&[1.0f32, 2.0]);
        let mv = matmul(&a, &v);
        assert_eq!(mv.shape(), &[2]);
        assert_eq!(mv.to_vec::<f32>().unwrap(), vec![-2.0, -2.0]);
        let vm = matmul(&w, &a);
        assert_eq!(vm.shape(), &[3]);
        assert_eq!(vm.to_vec::<f32>().unwrap(), vec![9.0, 12.0, 15.0]);
        let vv = matmul(&v, &v);
        assert_eq!(vv.shape(), &[] as &[usize]);
        assert_eq!(vv.item::<f32>().unwrap(), 2.0);
        // Batched matrix @ vector.
        let b3 = Array::from_slice(&lcg(2 * 2 * 3, 1, 7), &[2, 2, 3]);
        assert_eq!(matmul(&b3, &v).shape(), &[2, 2]);
        assert!(matmul(&a, &a).check().is_err());
        assert!(matmul(&Array::scalar(1.0f32), &a).check().is_err());
        // Mixed dtypes promote.
        assert_eq!(matmul(&a, &v.astype(Dtype::Float64)).dtype(), Dtype::Float64);
    }

    #[test]
    fn compositions() {
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
        let b = Array::from_slice(&[0.0f32, 1.0, 1.0, 0.0], &[2, 2]);
        let c = Array::from_slice(&[1.0f32, 1.0, 1.0, 1.0], &[2, 2]);
        assert_eq!(addmm(&c, &a, &b, 2.0, 0.5).to_vec::<f32>().unwrap(), vec![4.5, 2.5, 8.5, 6.5]);
        let x = Array::vec(&[1.0f32, 2.0, 3.0]);
        let y = Array::vec(&[4.0f32, 5.0, 6.0]);
        assert_eq!(inner(&x, &y).item::<f32>().unwrap(), 32.0);
        assert_eq!(inner(&a, &b).to_vec::<f32>().unwrap(), vec![2.0, 1.0, 4.0, 3.0]);
        let o = outer(&x, &Array::vec(&[1.0f32, -1.0]));
        assert_eq!(o.shape(), &[3, 2]);
        assert_eq!(o.to_vec::<f32>().unwrap(), vec![1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
        // tensordot: [2,3,4] x [4,3,5] over (1,2)-(1,0) -> [2,5].
        let p = lcg(24, 3, 7);
        let q = lcg(60, 4, 7);
        let t = tensordot(&Array::from_slice(&p, &[2, 3, 4]), &Array::from_slice(&q, &[4, 3, 5]), &[1, 2], &[1, 0]);
        assert_eq!(t.shape(), &[2, 5]);
        let mut want = vec![0.0f32; 10];
        for i in 0..2 {
            for l in 0..5 {
                for j in 0..3 {
                    for k in 0..4 {
                        want[i * 5 + l] += p[i * 12 + j * 4 + k] * q[k * 15 + j * 5 + l];
                    }
                }
            }
        }
        assert_eq!(t.to_vec::<f32>().unwrap(), want);
        assert_eq!(tensordot_n(&a, &b, 1).to_vec::<f32>().unwrap(), matmul(&a, &b).to_vec::<f32>().unwrap());
        let k = kron(&a, &Array::from_slice(&[1.0f32, 10.0], &[1, 2]));
        assert_eq!(k.shape(), &[2, 4]);
        assert_eq!(k.to_vec::<f32>().unwrap(), vec![1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0]);
        assert_eq!(kron(&x, &Array::vec(&[1.0f32, 2.0])).to_vec::<f32>().unwrap(), vec![1.0, 2.0, 2.0, 4.0, 3.0, 6.0]);
    }
}
