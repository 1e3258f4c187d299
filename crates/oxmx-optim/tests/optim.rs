//! oxmx-optim against its oracles (tests/fixtures/optim.json, written by
//! scripts/gen_optim_fixtures.py from PyTorch and MLX), plus state files, routing and errors.

use oxmx_core::prelude::*;
use oxmx_optim::*;
use serde_json::Value;
use std::sync::OnceLock;

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/optim.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e} (run scripts/gen_optim_fixtures.py)"));
        serde_json::from_str(&text).unwrap()
    })
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn shape_of(shapes: &Value, key: &str) -> Vec<usize> {
    shapes[key].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

fn dtype_of(name: &str) -> Dtype {
    Dtype::from_name(name).unwrap()
}

/// A map of arrays from fixture data (flat values per key) and shapes.
fn tree(v: &Value, shapes: &Value, dtype: Dtype) -> Params {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, d)| {
            let vals: Vec<f32> = f64s(d).iter().map(|x| *x as f32).collect();
            let a = Array::from_slice(&vals, &shape_of(shapes, k));
            (k.clone(), if dtype == Dtype::Float32 { a } else { a.astype(dtype) })
        })
        .collect()
}

fn schedule(spec: &Value) -> Schedule {
    let f = |k: &str| spec[k].as_f64().unwrap() as f32;
    let u = |k: &str| spec[k].as_u64().unwrap();
    match spec["kind"].as_str().unwrap() {
        "exponential_decay" => exponential_decay(f("init"), f("decay_rate")),
        "step_decay" => step_decay(f("init"), f("decay_rate"), u("step_size")).unwrap(),
        "cosine_decay" => cosine_decay(f("init"), u("decay_steps"), spec.get("end").map_or(0.0, |e| e.as_f64().unwrap() as f32)).unwrap(),
        "linear_schedule" => linear_schedule(f("init"), f("end"), u("steps")).unwrap(),
        "join_schedules" => join_schedules(
            spec["schedules"].as_array().unwrap().iter().map(schedule).collect(),
            spec["boundaries"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect(),
        )
        .unwrap(),
        k => panic!("unknown schedule {k}"),
    }
}

fn learning_rate(v: &Value) -> Option<LearningRate> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(LearningRate::from(n.as_f64().unwrap())),
        spec => Some(schedule(spec).into()),
    }
}

/// The optimizer a fixture case describes (MLX argument names).
fn build(case: &Value) -> Box<dyn Optimizer + Send> {
    let cfg = &case["config"];
    let lr = learning_rate(&case["lr"]);
    let num = |k: &str| cfg.get(k).map(|v| v.as_f64().unwrap());
    let flag = |k: &str| cfg.get(k).map(|v| v.as_bool().unwrap());
    let betas = || cfg.get("betas").map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()));
    let name = case["optimizer"].as_str().unwrap();
    let need_lr = || lr.clone().unwrap_or_else(|| panic!("{name} needs a learning rate"));
    macro_rules! set {
        ($o:ident, num $k:literal => $m:ident) => {
            if let Some(v) = num($k) {
                $o = $o.$m(v);
            }
        };
        ($o:ident, flag $k:literal => $m:ident) => {
            if let Some(v) = flag($k) {
                $o = $o.$m(v);
            }
        };
        ($o:ident, betas) => {
            if let Some((b1, b2)) = betas() {
                $o = $o.betas(b1, b2);
            }
        };
    }
    match name {
        "SGD" => {
            let mut o = SGD::new(need_lr());
            set!(o, num "momentum" => momentum);
            set!(o, num "weight_decay" => weight_decay);
            set!(o, num "dampening" => dampening);
            set!(o, flag "nesterov" => nesterov);
            Box::new(o)
        }
        "RMSprop" => {
            let mut o = RMSprop::new(need_lr());
            set!(o, num "alpha" => alpha);
            set!(o, num "eps" => eps);
            Box::new(o)
        }
        "Adagrad" => {
            let mut o = Adagrad::new(need_lr());
            set!(o, num "eps" => eps);
            Box::new(o)
        }
        "AdaDelta" => {
            let mut o = AdaDelta::new(need_lr());
            set!(o, num "rho" => rho);
            set!(o, num "eps" => eps);
            Box::new(o)
        }
        "Adam" => {
            let mut o = Adam::new(need_lr());
            set!(o, betas);
            set!(o, num "eps" => eps);
            set!(o, flag "bias_correction" => bias_correction);
            Box::new(o)
        }
        "AdamW" => {
            let mut o = AdamW::new(need_lr());
            set!(o, betas);
            set!(o, num "eps" => eps);
            set!(o, num "weight_decay" => weight_decay);
            set!(o, flag "bias_correction" => bias_correction);
            Box::new(o)
        }
        "Adamax" => {
            let mut o = Adamax::new(need_lr());
            set!(o, betas);
            set!(o, num "eps" => eps);
            Box::new(o)
        }
        "Lion" => {
            let mut o = Lion::new(need_lr());
            set!(o, betas);
            set!(o, num "weight_decay" => weight_decay);
            Box::new(o)
        }
        "Adafactor" => {
            let mut o = Adafactor::new();
            if let Some(lr) = lr.clone() {
                o = o.with_learning_rate(lr);
            }
            set!(o, num "clip_threshold" => clip_threshold);
            set!(o, num "decay_rate" => decay_rate);
            set!(o, num "weight_decay" => weight_decay);
            set!(o, flag "scale_parameter" => scale_parameter);
            set!(o, flag "relative_step" => relative_step);
            set!(o, flag "warmup_init" => warmup_init);
            if let Some(b1) = num("beta_1") {
                o = o.beta_1(Some(b1));
            }
            Box::new(o)
        }
        "Muon" => {
            let mut o = Muon::new(need_lr());
            set!(o, num "momentum" => momentum);
            set!(o, num "weight_decay" => weight_decay);
            set!(o, flag "nesterov" => nesterov);
            if let Some(n) = cfg.get("ns_steps") {
                o = o.ns_steps(n.as_u64().unwrap() as usize);
            }
            Box::new(o)
        }
        other => panic!("unknown optimizer {other}"),
    }
}

/// `|got - want| <= rtol * |want| + atol` for every element. Returns the largest
/// `|got - want| / (rtol * |want| + atol)` (the share of the tolerance used).
fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = *g as f64;
        let bound = rtol * w.abs() + atol;
        assert!((g - w).abs() <= bound, "{what}[{i}]: got {g}, expected {w} (rtol {rtol}, atol {atol})");
        worst = worst.max((g - w).abs() / bound);
    }
    worst
}

fn values(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

#[test]
fn optimizers_match_oracles() {
    let cases = fixture()["cases"].as_array().unwrap();
    assert!(cases.len() >= 25, "fixture has only {} cases", cases.len());
    let mut torch_cases = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dtype = dtype_of(case["dtype"].as_str().unwrap());
        let shapes = &case["shapes"];
        let (rtol, atol) = (case["rtol"].as_f64().unwrap(), case["atol"].as_f64().unwrap());
        torch_cases += (case["oracle"] == "torch") as usize;
        let mut opt = build(case);
        let mut worst = 0.0f64;
        let mut params = tree(&case["params"], shapes, dtype);
        let grads = case["grads"].as_array().unwrap();
        let expected = case["expected"].as_array().unwrap();
        assert!(!grads.is_empty());
        for (t, (g, want)) in grads.iter().zip(expected).enumerate() {
            let g = tree(g, shapes, dtype);
            params = opt.apply_gradients(&g, &params).unwrap_or_else(|e| panic!("{name} step {}: {e}", t + 1));
            for (k, w) in want.as_object().unwrap() {
                let p = &params[k];
                assert_eq!(p.dtype(), dtype, "{name} step {} '{k}' dtype", t + 1);
                worst = worst.max(assert_close(&format!("{name} step {} '{k}'", t + 1), &values(p), &f64s(w), rtol, atol));
            }
            assert_eq!(opt.step(), t as u64 + 1, "{name}: step count");
            if let Some(lr) = case["learning_rates"][t].as_f64() {
                assert_close(&format!("{name} step {} learning_rate", t + 1), &[opt.learning_rate()], &[lr], 1e-6, 1e-9);
            }
        }
        // Run with --nocapture to see how much of the tolerance each case uses.
        println!("{name:<24} {:>8} rtol {rtol:e} atol {atol:e}: {:.3} of the tolerance", case["oracle"].as_str().unwrap(), worst);
        // The state has MLX's names and values.
        let state = opt.state();
        let want = case["state"].as_object().unwrap();
        let got_keys: Vec<&String> = state.keys().collect();
        let want_keys: Vec<&String> = want.keys().collect();
        let mut want_sorted = want_keys.clone();
        want_sorted.sort();
        assert_eq!(got_keys, want_sorted, "{name}: state keys");
        assert_eq!(state["step"].dtype(), Dtype::Uint64, "{name}: step dtype");
        for (k, w) in want {
            assert_close(&format!("{name} state '{k}'"), &values(&state[k]), &f64s(w), rtol.max(1e-5), atol.max(1e-6));
        }
    }
    assert!(torch_cases >= 10, "only {torch_cases} torch-checked cases");
}

#[test]
fn schedules_match_mlx() {
    let scheds = fixture()["schedules"].as_array().unwrap();
    assert!(scheds.len() >= 6);
    for s in scheds {
        let f = schedule(&s["spec"]);
        let want = f64s(&s["values"]);
        let got: Vec<f32> = (0..want.len() as u64).map(|t| f(t)).collect();
        // Cosine values near the end are differences of nearly equal float32 numbers: an
        // absolute floor keeps one ulp of cos() from failing the test.
        assert_close(&format!("schedule {}", s["spec"]), &got, &want, 1e-5, 1e-7);
    }
}

#[test]
fn clip_grad_norm_matches_mlx() {
    let cases = fixture()["clip"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for c in cases {
        let dtype = dtype_of(c["dtype"].as_str().unwrap());
        let grads = tree(&c["grads"], &c["shapes"], dtype);
        let max_norm = c["max_norm"].as_f64().unwrap() as f32;
        let (clipped, norm) = clip_grad_norm(&grads, max_norm).unwrap();
        let what = format!("clip {max_norm} {dtype}");
        let (rtol, atol) = if dtype == Dtype::Float16 { (2e-3, 1e-3) } else { (1e-5, 1e-7) };
        assert_close(&format!("{what} norm"), &[norm.item::<f32>().unwrap()], &[c["norm"].as_f64().unwrap()], 1e-5, 0.0);
        assert!(norm.item::<f32>().unwrap().is_finite(), "{what}: norm overflowed");
        for (k, w) in c["clipped"].as_object().unwrap() {
            assert_eq!(clipped[k].dtype(), dtype, "{what} '{k}' dtype");
            assert_close(&format!("{what} '{k}'"), &values(&clipped[k]), &f64s(w), rtol, atol);
        }
    }
    let (none, norm) = clip_grad_norm(&Params::new(), 1.0).unwrap();
    assert!(none.is_empty());
    assert_eq!(norm.item::<f32>().unwrap(), 0.0);
}

/// Fixture case `name`'s initial parameters and gradients.
fn case_data(name: &str) -> (Params, Vec<Params>) {
    let case = fixture()["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    let shapes = &case["shapes"];
    let params = tree(&case["params"], shapes, Dtype::Float32);
    let grads = case["grads"].as_array().unwrap().iter().map(|g| tree(g, shapes, Dtype::Float32)).collect();
    (params, grads)
}

fn assert_same(what: &str, a: &Params, b: &Params) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: keys");
    for (k, x) in a {
        assert_eq!(values(x), values(&b[k]), "{what}: '{k}'");
    }
}

fn boxed(o: impl Optimizer + Send + 'static) -> Box<dyn Optimizer + Send> {
    Box::new(o)
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("oxmx-optim-{}-{name}", std::process::id()))
}

/// Two steps, a save/load into a fresh optimizer, then both continue: identical results.
fn check_round_trip(what: &str, make: &dyn Fn() -> Box<dyn Optimizer + Send>) {
    let (mut params, grads) = case_data("adam_default");
    let mut a = make();
    for g in &grads[..2] {
        params = a.apply_gradients(g, &params).unwrap();
    }
    let path = temp_path(what);
    a.save_state(&path).unwrap();
    let mut b = make();
    b.load_state(&path).unwrap();
    let _ = std::fs::remove_file(path.with_extension("safetensors"));
    assert_eq!(b.step(), 2, "{what}: loaded step");
    assert_eq!(b.learning_rate(), a.learning_rate(), "{what}: loaded learning rate");
    assert_same(&format!("{what} loaded state"), &a.state(), &b.state());
    let (mut pa, mut pb) = (params.clone(), params);
    for g in &grads[2..] {
        pa = a.apply_gradients(g, &pa).unwrap();
        pb = b.apply_gradients(g, &pb).unwrap();
    }
    assert_same(&format!("{what} continued"), &pa, &pb);
    assert_eq!(a.step(), b.step());
}

#[test]
fn state_round_trips_through_files() {
    check_round_trip("adam", &|| boxed(Adam::new(0.01).bias_correction(true)));
    check_round_trip("sgd", &|| boxed(SGD::new(0.1).momentum(0.9).nesterov(true)));
    check_round_trip("adafactor", &|| boxed(Adafactor::new().beta_1(Some(0.9))));
    check_round_trip("muon", &|| boxed(Muon::new(0.02)));
    check_round_trip("scheduled", &|| boxed(AdaDelta::new(cosine_decay(1.0, 3, 0.1).unwrap())));
    check_round_trip("multi", &|| {
        let filters: Vec<Filter> = vec![Box::new(|path: &str, _: &Array| path.starts_with("layer."))];
        boxed(MultiOptimizer::new(vec![boxed(Lion::new(0.01)), boxed(RMSprop::new(0.01))], filters).unwrap())
    });
}

#[test]
fn multi_optimizer_routes_by_filter() {
    let (params, grads) = case_data("adam_default");
    let is_matrix: Filter = Box::new(|_: &str, a: &Array| a.ndim() >= 2);
    let mut multi = MultiOptimizer::new(vec![boxed(Muon::new(0.02)), boxed(AdamW::new(0.01))], vec![is_matrix]).unwrap();
    let mut muon = Muon::new(0.02);
    let mut adamw = AdamW::new(0.01);
    let (mut pm, mut ps) = (params.clone(), params.clone());
    for g in &grads {
        pm = multi.apply_gradients(g, &pm).unwrap();
        let (mats, rest): (Params, Params) = g.clone().into_iter().partition(|(_, a)| a.ndim() >= 2);
        let mut out = muon.apply_gradients(&mats, &ps).unwrap();
        out.extend(adamw.apply_gradients(&rest, &ps).unwrap());
        ps = out;
    }
    assert_same("multi vs separate", &pm, &ps);
    let state = multi.state();
    assert!(state.contains_key("states.0.layer.w.v"), "{:?}", state.keys());
    assert!(state.contains_key("states.1.layer.b.m"));
    assert!(!state.contains_key("states.0.layer.b.v") && !state.contains_key("states.1.layer.w.m"));
    assert_eq!(state["states.1.step"].item::<u64>().unwrap(), grads.len() as u64);
    assert_eq!(multi.step(), grads.len() as u64);

    multi.set_learning_rate(0.5f32.into());
    assert_eq!(multi.learning_rate(), 0.5);
    assert!(MultiOptimizer::new(vec![boxed(SGD::new(0.1))], vec![Box::new(|_: &str, _: &Array| true)]).is_err());
    assert!(MultiOptimizer::new(vec![], vec![]).is_err());
    let mut bad = state.clone();
    bad.insert("states.7.step".into(), Array::scalar(1u64));
    let err = multi.set_state(&bad).unwrap_err();
    assert!(err.message().contains("states.7.step"), "{err}");
}

#[test]
fn errors_name_the_key_and_leave_state_unchanged() {
    let (params, grads) = case_data("adam_default");
    let mut opt = Adam::new(0.01);

    let mut g = grads[0].clone();
    g.insert("missing.weight".into(), Array::vec(&[1.0f32]));
    let err = opt.apply_gradients(&g, &params).unwrap_err();
    assert!(err.message().contains("'missing.weight'"), "{err}");

    let mut g = grads[0].clone();
    g.insert("layer.w".into(), ops::zeros(&[4, 3], Dtype::Float32));
    let err = opt.apply_gradients(&g, &params).unwrap_err();
    assert!(err.message().contains("'layer.w'") && err.message().contains("[4, 3]") && err.message().contains("[3, 4]"), "{err}");
    assert_eq!(opt.step(), 0, "a failed step must not count");
    assert_eq!(opt.state().len(), 2, "a failed step must not create slots: {:?}", opt.state().keys());

    let mut p = params.clone();
    p.insert("layer.w".into(), ops::zeros(&[3, 4], Dtype::Int32));
    let err = opt.apply_gradients(&grads[0], &p).unwrap_err();
    assert!(err.message().contains("'layer.w'") && err.message().contains("int32"), "{err}");

    // Invalid hyperparameters, as MLX's constructors reject them.
    assert!(SGD::new(0.1).nesterov(true).apply_gradients(&grads[0], &params).unwrap_err().message().contains("Nesterov"));
    assert!(SGD::new(0.1).momentum(0.9).dampening(0.1).nesterov(true).apply_gradients(&grads[0], &params).is_err());
    assert!(Adam::new(0.1).betas(1.0, 0.9).apply_gradients(&grads[0], &params).unwrap_err().message().contains("beta1"));
    assert!(Lion::new(0.1).betas(0.9, -0.1).apply_gradients(&grads[0], &params).unwrap_err().message().contains("beta2"));
    assert!(RMSprop::new(0.1).eps(0.0).apply_gradients(&grads[0], &params).is_err());
    assert!(Adagrad::new(0.1).eps(-1.0).apply_gradients(&grads[0], &params).is_err());
    assert!(AdaDelta::new(0.1).rho(-0.5).apply_gradients(&grads[0], &params).is_err());
    assert!(Adafactor::new().relative_step(false).apply_gradients(&grads[0], &params).unwrap_err().message().contains("learning_rate"));

    // Bad states.
    let mut s = Adam::new(0.01);
    s.apply_gradients(&grads[0], &params).unwrap();
    let mut state = s.state();
    state.insert("layer.w.q".into(), ops::zeros(&[3, 4], Dtype::Float32));
    let err = Adam::new(0.01).set_state(&state).unwrap_err();
    assert!(err.message().contains("'layer.w.q'"), "{err}");
    let mut state = s.state();
    state.remove("step");
    assert!(Adam::new(0.01).set_state(&state).unwrap_err().message().contains("step"));
    let mut state = s.state();
    state.insert("layer.w.m".into(), ops::zeros(&[2, 2], Dtype::Float32));
    let mut t = Adam::new(0.01);
    t.set_state(&state).unwrap();
    let err = t.apply_gradients(&grads[1], &params).unwrap_err();
    assert!(err.message().contains("'layer.w.m'") && err.message().contains("[2, 2]"), "{err}");
    assert_eq!(t.step(), 1);

    // Degenerate shapes do not panic: an error naming the key, or an empty update.
    let mut z = Params::new();
    z.insert("z".into(), ops::zeros(&[0, 2, 2], Dtype::Float32));
    match Muon::new(0.1).apply_gradients(&z, &z) {
        Err(e) => assert!(e.message().contains("'z'"), "{e}"),
        Ok(out) => assert_eq!(out["z"].shape(), &[0, 2, 2]),
    }

    // Schedules and clipping.
    assert!(step_decay(0.1, 0.9, 0).is_err());
    assert!(cosine_decay(0.1, 0, 0.0).is_err());
    assert!(linear_schedule(0.0, 0.1, 0).is_err());
    assert!(join_schedules(vec![], vec![]).is_err());
    assert!(join_schedules(vec![exponential_decay(0.1, 0.9)], vec![3]).is_err());
    assert!(clip_grad_norm(&grads[0], -1.0).is_err());
    assert!(clip_grad_norm(&grads[0], f32::NAN).is_err());
    assert!(Optimizer::load_state(&mut Adam::new(0.1), &temp_path("does-not-exist")).is_err());
}

#[test]
fn state_is_lazy_and_keeps_dtypes() {
    let (params, grads) = case_data("adam_default");
    let mut opt = Adafactor::new().beta_1(Some(0.9));
    assert_eq!(opt.state().keys().collect::<Vec<_>>(), vec!["step"]);
    opt.init(&params).unwrap();
    let s = opt.state();
    assert_eq!(s["layer.w.exp_avg_sq_row"].shape(), &[3]);
    assert_eq!(s["layer.w.exp_avg_sq_col"].shape(), &[4]);
    assert_eq!(s["k.exp_avg_sq_row"].shape(), &[2, 3]);
    assert_eq!(s["k.exp_avg_sq_col"].shape(), &[2, 2]);
    assert_eq!(s["s.exp_avg_sq"].shape(), &[1]);
    assert_eq!(s["k.exp_avg"].shape(), &[2, 3, 2]);
    assert_eq!(opt.step(), 0);

    // Updates stay lazy (nothing evaluated until asked).
    let mut adam = Adam::new(0.01);
    let out = adam.apply_gradients(&grads[0], &params).unwrap();
    assert!(!out["layer.w"].is_evaluated());

    // Only the keys of the gradients are returned; a float16 parameter stays float16 under a
    // float32 gradient.
    let mut p = params.clone();
    p.insert("h".into(), Array::vec(&[1.0f32, 2.0]).astype(Dtype::Float16));
    let mut g = Params::new();
    g.insert("h".into(), Array::vec(&[0.5f32, 0.5]));
    let out = SGD::new(0.5).apply_gradients(&g, &p).unwrap();
    assert_eq!(out.keys().collect::<Vec<_>>(), vec!["h"]);
    assert_eq!(out["h"].dtype(), Dtype::Float16);
    assert_eq!(values(&out["h"]), vec![0.75, 1.75]);
}

#[test]
fn learning_rate_schedule_order() {
    let mut p = Params::new();
    p.insert("w".into(), Array::vec(&[0.0f32]));
    let mut g = Params::new();
    g.insert("w".into(), Array::vec(&[1.0f32]));
    // lr(step) = step + 1: the n-th update uses lr(n - 1), as MLX.
    let mut opt = SGD::new(LearningRate::schedule(|s| s as f32 + 1.0));
    assert_eq!(opt.learning_rate(), 1.0);
    let mut w = Vec::new();
    for _ in 0..3 {
        p = opt.apply_gradients(&g, &p).unwrap();
        w.push(values(&p["w"])[0]);
    }
    assert_eq!(w, vec![-1.0, -3.0, -6.0]);
    assert_eq!(opt.learning_rate(), 3.0);
    assert_eq!(opt.state()["learning_rate"].item::<f32>().unwrap(), 3.0);
    opt.set_learning_rate(0.5f32.into());
    p = opt.apply_gradients(&g, &p).unwrap();
    assert_eq!(values(&p["w"])[0], -6.5);
    assert_eq!(opt.learning_rate(), 0.5);
    // A new schedule is evaluated at the current step.
    opt.set_learning_rate(LearningRate::schedule(|s| s as f32 * 10.0));
    assert_eq!(opt.learning_rate(), 40.0);
}
