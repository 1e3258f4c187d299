//! Convolution, pooling, normalisation, attention, Transformer, recurrent, positional, upsampling
//! and bilinear layers against PyTorch (and MLX where the two differ), with oracle data from
//! scripts/gen_nn_layer_fixtures.py (fixtures/layers/*.json). Weights are loaded by their MLX
//! names through `Module::update`, so the parameter paths are checked too. Plus gradients against
//! float64 finite differences, and the errors for wrong inputs.

use oxmx_core::{ops, Array, Dtype};
use oxmx_nn::*;
use serde_json::Value;
use std::collections::BTreeSet;

// ------------------------------------------------------------------ fixture helpers

fn cases(family: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/layers/{family}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

fn data_of(v: &Value) -> Vec<f64> {
    v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect()
}

fn arr(v: &Value) -> Array {
    let data: Vec<f32> = data_of(v).into_iter().map(|d| d as f32).collect();
    Array::from_slice(&data, &shape_of(v))
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

fn u(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn b(v: &Value) -> bool {
    v.as_bool().unwrap()
}

fn dims<const N: usize>(v: &Value) -> [usize; N] {
    usizes(v).try_into().unwrap()
}

/// `|got - want| <= tol * max(1, |want|)` element-wise, with matching shapes.
fn assert_close(got: &Array, want: &Value, tol: f64, ctx: &str) {
    let ws = shape_of(want);
    if let Err(e) = got.check() {
        panic!("{ctx}: {e}");
    }
    assert_eq!(got.shape(), ws.as_slice(), "{ctx}: shape");
    let g = got.astype(Dtype::Float64).to_vec::<f64>().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let w = data_of(want);
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs() / b.abs().max(1.0);
        assert!(err <= tol, "{ctx}[{i}]: got {a}, want {b} (relative error {err:e})");
        worst = worst.max(err);
    }
    assert!(worst.is_finite(), "{ctx}: non-finite values");
}

/// Loads the case's parameters by name, checking that the module has exactly these names.
fn load_params(m: &mut dyn Module, c: &Value, ctx: &str) {
    let params: Params = c["params"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), arr(v))).collect();
    let want: BTreeSet<&String> = params.keys().collect();
    let have = m.parameters();
    let have: BTreeSet<&String> = have.keys().collect();
    assert_eq!(have, want, "{ctx}: parameter names");
    m.update(&params).unwrap_or_else(|e| panic!("{ctx}: {e}"));
}

fn err_of(a: &Array) -> String {
    match a.check() {
        Err(e) => e.to_string(),
        Ok(()) => panic!("expected an error, got an array of shape {:?}", a.shape()),
    }
}

const TOL: f64 = 1e-5;

// ------------------------------------------------------------------ convolutions

#[test]
fn convolutions_match_torch() {
    let mut n = 0;
    for c in cases("conv") {
        let layer = c["layer"].as_str().unwrap();
        let (cin, cout) = (u(&c["in_channels"]), u(&c["out_channels"]));
        let has_bias = c["params"].get("bias").is_some();
        let x = arr(&c["x"]);
        let ctx = format!("{layer} {:?}", c["kernel_size"]);
        let y = match layer {
            "Conv1d" => {
                let k: [usize; 1] = dims(&c["kernel_size"]);
                let (s, p, d): ([usize; 1], [usize; 1], [usize; 1]) = (dims(&c["stride"]), dims(&c["padding"]), dims(&c["dilation"]));
                let mut m = Conv1d::with_options(cin, cout, k, s, p, d, u(&c["groups"]), has_bias).unwrap();
                load_params(&mut m, &c, &ctx);
                m.forward(&x)
            }
            "Conv2d" => {
                let mut m = Conv2d::with_options(
                    cin,
                    cout,
                    dims::<2>(&c["kernel_size"]),
                    dims::<2>(&c["stride"]),
                    dims::<2>(&c["padding"]),
                    dims::<2>(&c["dilation"]),
                    u(&c["groups"]),
                    has_bias,
                )
                .unwrap();
                load_params(&mut m, &c, &ctx);
                m.forward(&x)
            }
            "Conv3d" => {
                let mut m = Conv3d::with_options(
                    cin,
                    cout,
                    dims::<3>(&c["kernel_size"]),
                    dims::<3>(&c["stride"]),
                    dims::<3>(&c["padding"]),
                    dims::<3>(&c["dilation"]),
                    u(&c["groups"]),
                    has_bias,
                )
                .unwrap();
                load_params(&mut m, &c, &ctx);
                m.forward(&x)
            }
            "ConvTranspose1d" => {
                let mut m = ConvTranspose1d::with_options(
                    cin,
                    cout,
                    dims::<1>(&c["kernel_size"]),
                    dims::<1>(&c["stride"]),
                    dims::<1>(&c["padding"]),
                    dims::<1>(&c["dilation"]),
                    dims::<1>(&c["output_padding"]),
                    has_bias,
                );
                load_params(&mut m, &c, &ctx);
                m.forward(&x)
            }
            "ConvTranspose2d" => {
                let mut m = ConvTranspose2d::with_options(
                    cin,
                    cout,
                    dims::<2>(&c["kernel_size"]),
                    dims::<2>(&c["stride"]),
                    dims::<2>(&c["padding"]),
                    dims::<2>(&c["dilation"]),
                    dims::<2>(&c["output_padding"]),
                    has_bias,
                );
                load_params(&mut m, &c, &ctx);
                m.forward(&x)
            }
            "ConvTranspose3d" => {
                let mut m = ConvTranspose3d::with_options(
                    cin,
                    cout,
                    dims::<3>(&c["kernel_size"]),
                    dims::<3>(&c["stride"]),
                    dims::<3>(&c["padding"]),
                    dims::<3>(&c["dilation"]),
                    dims::<3>(&c["output_padding"]),
                    has_bias,
                );
                load_params(&mut m, &c, &ctx);
                m.forward(&x)
            }
            l => panic!("unknown layer {l}"),
        };
        assert_close(&y, &c["y"], TOL, &ctx);
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn convolution_construction_follows_mlx() {
    let m = Conv2d::new(4, 6, 3);
    assert_eq!(m.weight.shape(), &[6, 3, 3, 4]);
    assert_eq!(m.bias.as_ref().unwrap().to_vec::<f32>().unwrap(), vec![0.0; 6]);
    let bound = (1.0f32 / 36.0).sqrt();
    let w = m.weight.to_vec::<f32>().unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(w.iter().any(|v| v.abs() > bound / 2.0), "weights should fill U(-s, s)");
    assert_eq!((m.stride, m.padding, m.dilation, m.groups), ([1, 1], [0, 0], [1, 1], 1));
    let g = Conv1d::with_options(6, 4, 5, 1usize, 2usize, 1usize, 2, false).unwrap();
    assert_eq!(g.weight.shape(), &[4, 5, 3]);
    assert!(g.bias.is_none());
    assert_eq!(g.parameters().keys().cloned().collect::<Vec<_>>(), vec!["weight"]);
    let g = Conv3d::with_options(2, 3, (1, 2, 3), 1usize, 0usize, 1usize, 1, true).unwrap();
    assert_eq!(g.weight.shape(), &[3, 1, 2, 3, 2]);
    let t = ConvTranspose2d::new(3, 5, (2, 4));
    assert_eq!(t.weight.shape(), &[5, 2, 4, 3]);
    assert_eq!(t.parameters().keys().cloned().collect::<Vec<_>>(), vec!["bias", "weight"]);
    assert!(Conv2d::with_options(6, 4, 3, 1usize, 0usize, 1usize, 4, true).is_err(), "4 groups do not divide 6 channels");
    // The convolution output shape: (9 + 2 - 2 * 2 - 1) / 2 + 1 = 4.
    let y = Conv1d::with_options(3, 2, 3, 2usize, 1usize, 2usize, 1, true).unwrap().forward(&ops::ones(&[1, 9, 3], Dtype::Float32));
    assert_eq!(y.shape(), &[1, 4, 2]);
}

// ------------------------------------------------------------------ pooling

#[test]
fn pooling_matches_torch() {
    for c in cases("pool") {
        let layer = c["layer"].as_str().unwrap();
        let x = arr(&c["x"]);
        let k = &c["kernel_size"];
        let s = if c["stride"].is_null() { k } else { &c["stride"] };
        let p = &c["padding"];
        let default_stride = c["stride"].is_null();
        let y = match layer {
            "MaxPool1d" if default_stride => MaxPool1d::new(dims::<1>(k)).unwrap().forward(&x),
            "MaxPool1d" => MaxPool1d::with_options(dims::<1>(k), dims::<1>(s), dims::<1>(p)).unwrap().forward(&x),
            "AvgPool1d" => AvgPool1d::with_options(dims::<1>(k), dims::<1>(s), dims::<1>(p)).unwrap().forward(&x),
            "MaxPool2d" if default_stride => MaxPool2d::new(dims::<2>(k)).unwrap().forward(&x),
            "MaxPool2d" => MaxPool2d::with_options(dims::<2>(k), dims::<2>(s), dims::<2>(p)).unwrap().forward(&x),
            "AvgPool2d" if default_stride => AvgPool2d::new(dims::<2>(k)).unwrap().forward(&x),
            "AvgPool2d" => AvgPool2d::with_options(dims::<2>(k), dims::<2>(s), dims::<2>(p)).unwrap().forward(&x),
            "MaxPool3d" => MaxPool3d::with_options(dims::<3>(k), dims::<3>(s), dims::<3>(p)).unwrap().forward(&x),
            "AvgPool3d" => AvgPool3d::with_options(dims::<3>(k), dims::<3>(s), dims::<3>(p)).unwrap().forward(&x),
            l => panic!("unknown layer {l}"),
        };
        assert_close(&y, &c["y"], TOL, &format!("{layer} k={k} s={s} p={p}"));
    }
    assert!(MaxPool2d::new(0usize).is_err());
    assert!(MaxPool2d::new(2usize).unwrap().parameters().is_empty());
}

// ------------------------------------------------------------------ normalisation

#[test]
fn batch_norm_matches_torch() {
    for c in cases("norm").into_iter().filter(|c| c["layer"] == "BatchNorm") {
        let ctx = format!("BatchNorm x{:?} affine={} track={}", shape_of(&c["x"]), c["affine"], c["track_running_stats"]);
        let track = b(&c["track_running_stats"]);
        let mut m = BatchNorm::with_options(u(&c["num_features"]), 1e-5, 0.1, b(&c["affine"]), track).unwrap();
        load_params(&mut m, &c, &ctx);
        let x = arr(&c["x"]);
        if track {
            // The running statistics are parameters (saved with the model) but buffers: never
            // trainable, even after `unfreeze`.
            assert!(m.parameters().contains_key("running_mean"), "{ctx}");
            m.unfreeze().unwrap();
            let trainable = m.trainable_parameters();
            assert!(!trainable.contains_key("running_mean") && !trainable.contains_key("running_var"), "{ctx}");
            assert_eq!(trainable.contains_key("weight"), b(&c["affine"]), "{ctx}");
            m.set_eval();
            assert_close(&m.forward(&x), &c["y_eval"], TOL, &format!("{ctx} eval"));
            assert_close(&m.forward_train(&x), &c["y_eval"], TOL, &format!("{ctx} eval forward_train"));
            m.train(true);
        }
        // `forward(&self)` in training mode: batch statistics, running statistics untouched.
        let before = m.running_mean.clone();
        assert_close(&m.forward(&x), &c["y_train"], TOL, &format!("{ctx} train forward"));
        assert_eq!(m.running_mean.as_ref().map(|a| a.id()), before.as_ref().map(|a| a.id()));
        // `forward_train` is MLX's __call__: batch statistics and the momentum update.
        assert_close(&m.forward_train(&x), &c["y_train"], TOL, &format!("{ctx} forward_train"));
        if track {
            assert_close(m.running_mean.as_ref().unwrap(), &c["running_mean_after"], TOL, &format!("{ctx} running_mean"));
            assert_close(m.running_var.as_ref().unwrap(), &c["running_var_after"], TOL, &format!("{ctx} running_var"));
        }
    }
}

#[test]
fn group_and_instance_norm_match_torch_and_mlx() {
    let mut seen = (0, 0, 0);
    for c in cases("norm") {
        let x = arr(&c["x"]);
        match c["layer"].as_str().unwrap() {
            "GroupNorm" => {
                let pc = b(&c["pytorch_compatible"]);
                let ctx = format!("GroupNorm({}, {}) pytorch_compatible={pc} oracle={}", c["num_groups"], c["dims"], c["oracle"]);
                let mut m = GroupNorm::with_options(u(&c["num_groups"]), u(&c["dims"]), 1e-5, b(&c["affine"]), pc).unwrap();
                load_params(&mut m, &c, &ctx);
                assert_close(&m.forward(&x), &c["y"], TOL, &ctx);
                if pc {
                    seen.0 += 1
                } else {
                    seen.1 += 1
                }
            }
            "InstanceNorm" => {
                let ctx = format!("InstanceNorm x{:?}", shape_of(&c["x"]));
                let mut m = InstanceNorm::with_options(u(&c["dims"]), 1e-5, b(&c["affine"])).unwrap();
                load_params(&mut m, &c, &ctx);
                assert_close(&m.forward(&x), &c["y"], TOL, &ctx);
                seen.2 += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen, (3, 3, 2));
    assert!(GroupNorm::new(3, 8).is_err(), "3 groups do not divide 8 features");
    assert!(InstanceNorm::new(4).parameters().is_empty(), "InstanceNorm is not affine by default");
    assert!(BatchNorm::with_options(4, 0.0, 0.1, true, true).is_err(), "eps must be positive");
}

// ------------------------------------------------------------------ attention

#[test]
fn multi_head_attention_matches_torch() {
    for c in cases("attention") {
        let ctx = format!("MultiHeadAttention dims={} heads={} bias={}", c["dims"], c["num_heads"], c["bias"]);
        let opt = |k: &str| c.get(k).map(u);
        let o = MultiHeadAttentionOptions {
            query_input_dims: opt("query_input_dims"),
            key_input_dims: opt("key_input_dims"),
            value_input_dims: opt("value_input_dims"),
            value_dims: opt("value_dims"),
            value_output_dims: opt("value_output_dims"),
            bias: b(&c["bias"]),
        };
        let mut m = MultiHeadAttention::with_options(u(&c["dims"]), u(&c["num_heads"]), o).unwrap();
        load_params(&mut m, &c, &ctx);
        let (q, k, v) = (arr(&c["queries"]), arr(&c["keys"]), arr(&c["values"]));
        assert_close(&m.forward(&q, &k, &v, None), &c["y"], TOL, &ctx);
        if let Some(mask) = c.get("mask") {
            assert_close(&m.forward(&q, &k, &v, Some(&arr(mask))), &c["y_masked"], TOL, &format!("{ctx} additive mask"));
        }
        if let Some(mask) = c.get("bool_mask") {
            let mask = arr(mask).astype(Dtype::Bool);
            assert_close(&m.forward(&q, &k, &v, Some(&mask)), &c["y_bool_masked"], TOL, &format!("{ctx} boolean mask"));
        }
    }
}

#[test]
fn causal_mask_is_mlx_s() {
    let m = MultiHeadAttention::create_additive_causal_mask(3);
    assert_eq!(m.shape(), &[3, 3]);
    let v = m.to_vec::<f32>().unwrap();
    let lo = f32::MIN;
    assert_eq!(v, vec![0.0, lo, lo, 0.0, 0.0, lo, 0.0, 0.0, 0.0]);
    assert!(MultiHeadAttention::new(10, 3).is_err());
    let names: Vec<String> = MultiHeadAttention::new(8, 2).unwrap().parameters().keys().cloned().collect();
    assert_eq!(names, ["key_proj.weight", "out_proj.weight", "query_proj.weight", "value_proj.weight"]);
}

// ------------------------------------------------------------------ transformer

#[test]
fn transformer_matches_torch() {
    for c in cases("transformer") {
        let norm_first = b(&c["norm_first"]);
        let ctx = format!("Transformer norm_first={norm_first}");
        let opts = TransformerOptions { mlp_dims: Some(u(&c["mlp_dims"])), norm_first, ..Default::default() };
        let (d, h) = (u(&c["dims"]), u(&c["num_heads"]));
        let mut t = Transformer::with_options(d, h, u(&c["num_encoder_layers"]), u(&c["num_decoder_layers"]), &opts).unwrap();
        load_params(&mut t, &c, &ctx);
        let (src, tgt, src_mask) = (arr(&c["src"]), arr(&c["tgt"]), arr(&c["src_mask"]));
        let tgt_mask = MultiHeadAttention::create_additive_causal_mask(tgt.shape()[1]);
        assert_close(&t.encoder.layers[0].forward(&src, Some(&src_mask)), &c["encoder_layer0"], TOL, &format!("{ctx} encoder layer 0"));
        assert_close(&t.encoder.forward(&src, Some(&src_mask)), &c["memory"], TOL, &format!("{ctx} encoder"));
        let y = t.forward(&src, &tgt, Some(&src_mask), Some(&tgt_mask), None);
        assert_close(&y, &c["y"], TOL, &ctx);

        // Gradient checkpointing changes neither the output nor the gradients.
        let mut tc = t.clone();
        tc.encoder.checkpoint = true;
        tc.decoder.checkpoint = true;
        assert_close(&tc.forward(&src, &tgt, Some(&src_mask), Some(&tgt_mask), None), &c["y"], TOL, &format!("{ctx} checkpoint"));
        let loss = |m: &Transformer, p: &Params| {
            let mut m = m.clone();
            m.update(p).unwrap();
            ops::sum(&ops::square(&m.forward(&src, &tgt, Some(&src_mask), Some(&tgt_mask), None)), None, false)
        };
        let g1 = oxmx_core::grad(|p: Params| loss(&t, &p))(t.trainable_parameters());
        let g2 = oxmx_core::grad(|p: Params| loss(&tc, &p))(tc.trainable_parameters());
        assert_eq!(g1.len(), g2.len());
        for (k, a) in &g1 {
            let (x, y) = (a.to_vec::<f32>().unwrap(), g2[k].to_vec::<f32>().unwrap());
            for (p, q) in x.iter().zip(&y) {
                assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{ctx} checkpointed gradient {k}: {p} vs {q}");
            }
        }
        assert!(g1.values().any(|a| ops::any(&ops::not_equal(a, 0.0), None, false).item::<bool>().unwrap()));
    }
}

#[test]
fn transformer_structure_follows_mlx() {
    let t = Transformer::new(8, 2, 2, 1).unwrap();
    let p = t.parameters();
    for k in [
        "encoder.layers.1.attention.query_proj.weight",
        "encoder.layers.0.ln1.bias",
        "encoder.layers.0.linear1.weight",
        "encoder.layers.0.linear2.bias",
        "encoder.ln.weight",
        "decoder.layers.0.self_attention.out_proj.weight",
        "decoder.layers.0.cross_attention.key_proj.weight",
        "decoder.layers.0.ln3.weight",
        "decoder.ln.bias",
    ] {
        assert!(p.contains_key(k), "missing {k}");
    }
    assert_eq!(p["encoder.layers.0.linear1.weight"].shape(), &[32, 8], "mlp_dims defaults to 4 * dims");
    assert!(!p.keys().any(|k| k.contains("query_proj.bias")), "MLX's Transformer attention has no biases");
    // 2 encoder layers (4 attention + 2 ln + 2 linear) ... counted by name.
    assert_eq!(p.keys().filter(|k| k.starts_with("encoder.layers.")).count(), 2 * (4 + 4 + 4));
    assert_eq!(p.keys().filter(|k| k.starts_with("decoder.layers.")).count(), 8 + 6 + 4);
    let mut t = t;
    t.set_eval();
    assert!(!t.encoder.layers[1].dropout1.training());
    let mut ok = true;
    let e = TransformerEncoderLayer::with_options(8, 2, &TransformerOptions { dropout: 1.5, ..Default::default() });
    ok &= e.is_err();
    assert!(ok, "dropout outside [0, 1) is an error");
}

// ------------------------------------------------------------------ recurrent

#[test]
fn recurrent_layers_match_torch() {
    let mut n = 0;
    for c in cases("recurrent") {
        let layer = c["layer"].as_str().unwrap();
        let ctx = format!("{layer} x{:?} bias={} h0={}", shape_of(&c["x"]), c["bias"], c.get("h0").is_some());
        let (d, h, bias) = (u(&c["input_size"]), u(&c["hidden_size"]), b(&c["bias"]));
        let x = arr(&c["x"]);
        let h0 = c.get("h0").map(arr);
        match layer {
            "RNN" => {
                let nl = match c["nonlinearity"].as_str().unwrap() {
                    "relu" => Some(ActivationFn::relu()),
                    _ => None,
                };
                let mut m = RNN::with_options(d, h, bias, nl);
                load_params(&mut m, &c, &ctx);
                assert_close(&m.forward(&x, h0.as_ref()), &c["y"], TOL, &ctx);
            }
            "GRU" => {
                let mut m = GRU::new(d, h, bias);
                load_params(&mut m, &c, &ctx);
                assert_close(&m.forward(&x, h0.as_ref()), &c["y"], TOL, &ctx);
            }
            "LSTM" => {
                let mut m = LSTM::new(d, h, bias);
                load_params(&mut m, &c, &ctx);
                let c0 = c.get("c0").map(arr);
                let (hs, cs) = m.forward(&x, h0.as_ref(), c0.as_ref());
                assert_close(&hs, &c["y"], TOL, &format!("{ctx} hidden"));
                assert_close(&cs, &c["cell"], TOL, &format!("{ctx} cell"));
            }
            l => panic!("unknown layer {l}"),
        }
        n += 1;
    }
    assert_eq!(n, 10);
    let names = |m: &dyn Module| m.parameters().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&RNN::new(3, 4)), ["Whh", "Wxh", "bias"]);
    assert_eq!(names(&GRU::new(3, 4, true)), ["Wh", "Wx", "b", "bhn"]);
    assert_eq!(names(&LSTM::new(3, 4, true)), ["Wh", "Wx", "bias"]);
    assert_eq!(LSTM::new(3, 4, true).Wx.shape(), &[16, 3]);
    assert_eq!(GRU::new(3, 4, false).Wh.shape(), &[12, 4]);
}

// ------------------------------------------------------------------ bilinear

#[test]
fn bilinear_matches_torch() {
    for c in cases("bilinear") {
        let ctx = format!("Bilinear bias={}", c["bias"]);
        let mut m = Bilinear::new(u(&c["input1_dims"]), u(&c["input2_dims"]), u(&c["output_dims"]), b(&c["bias"]));
        load_params(&mut m, &c, &ctx);
        assert_close(&m.forward(&arr(&c["x1"]), &arr(&c["x2"])), &c["y"], TOL, &ctx);
    }
    assert_eq!(Bilinear::new(4, 5, 3, true).weight.shape(), &[3, 5, 4]);
}

// ------------------------------------------------------------------ positional

#[test]
fn positional_encodings_match_mlx() {
    let mut seen = BTreeSet::new();
    for c in cases("positional") {
        let layer = c["layer"].as_str().unwrap();
        seen.insert(layer.to_string());
        let ctx = format!("{layer} {}", c.get("dims").map(|d| d.to_string()).unwrap_or_default());
        match layer {
            "RoPE" => {
                let m = RoPE::with_options(u(&c["dims"]), b(&c["traditional"]), f(&c["base"]), f(&c["scale"]));
                let x = arr(&c["x"]);
                let y = match c.get("offset_array") {
                    Some(o) => m.forward(&x, &arr(o).astype(Dtype::Int32)),
                    None => m.forward(&x, u(&c["offset"])),
                };
                assert_close(&y, &c["y"], TOL, &format!("{ctx} traditional={} offset={}", c["traditional"], c["offset"]));
                assert!(m.parameters().is_empty());
            }
            "rope_freqs" => {
                let y = rope(
                    &arr(&c["x"]),
                    u(&c["dims"]),
                    b(&c["traditional"]),
                    None,
                    f(&c["scale"]),
                    u(&c["offset"]),
                    Some(&arr(&c["freqs"])),
                );
                assert_close(&y, &c["y"], TOL, &ctx);
            }
            "SinusoidalPositionalEncoding" => {
                let m = SinusoidalPositionalEncoding::with_options(
                    u(&c["dims"]),
                    c.get("min_freq").map_or(1e-4, f),
                    c.get("max_freq").map_or(1.0, f),
                    c.get("scale").map(f),
                    c.get("cos_first").is_some_and(b),
                    c.get("full_turns").is_some_and(b),
                )
                .unwrap();
                assert!(m.parameters().is_empty(), "the frequencies are not parameters");
                assert_close(&m.forward(&arr(&c["x"])), &c["y"], TOL, &ctx);
            }
            "ALiBi" => {
                let heads = u(&c["num_heads"]);
                let m = ALiBi::create_alibi_matrix(
                    u(&c["q_sequence_length"]),
                    u(&c["k_sequence_length"]),
                    heads,
                    u(&c["offset"]),
                    Dtype::Float32,
                );
                assert_close(&m, &c["matrix"], TOL, &format!("{ctx} matrix heads={heads}"));
                assert_close(&ALiBi::create_alibi_slope(heads, Dtype::Float32), &c["slopes"], TOL, &format!("{ctx} slopes"));
                let y = ALiBi::new().forward(&arr(&c["scores"]), u(&c["offset"]), Some(&arr(&c["mask"])));
                assert_close(&y, &c["y"], TOL, &format!("{ctx} forward heads={heads}"));
            }
            l => panic!("unknown layer {l}"),
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(SinusoidalPositionalEncoding::new(5).is_err());
}

// ------------------------------------------------------------------ upsample

#[test]
fn upsample_matches_torch_and_mlx() {
    let mut n = 0;
    for c in cases("upsample") {
        let scale: Vec<f64> = c["scale_factor"].as_array().unwrap().iter().map(f).collect();
        let mode = c["mode"].as_str().unwrap();
        let ctx = format!("Upsample {mode} {scale:?} align_corners={} oracle={}", c["align_corners"], c["oracle"]);
        let m = Upsample::new(&scale, mode, b(&c["align_corners"])).unwrap();
        assert_close(&m.forward(&arr(&c["x"])), &c["y"], TOL, &ctx);
        n += 1;
    }
    assert_eq!(n, 12);
    // One factor applies to every spatial axis.
    let y = Upsample::new(&[2.0], "nearest", false).unwrap().forward(&ops::ones(&[1, 2, 3, 4, 1], Dtype::Float32));
    assert_eq!(y.shape(), &[1, 4, 6, 8, 1]);
    assert!(Upsample::new(&[2.0], "bilinear", false).is_err());
}

// ------------------------------------------------------------------ gradients

/// Deterministic values in [-1, 1).
fn lcg(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn f64_array(shape: &[usize], seed: u64) -> Array {
    Array::from_slice(&lcg(shape.iter().product(), seed), shape)
}

/// Checks `grad(loss)(inputs)` against central differences in float64 at a few positions of
/// every input.
fn check_gradients(name: &str, inputs: Vec<Array>, loss: impl Fn(&[Array]) -> Array) {
    let grads = oxmx_core::grad(|p: Vec<Array>| loss(&p))(inputs.clone());
    let h = 1e-6;
    for (i, (x, g)) in inputs.iter().zip(&grads).enumerate() {
        let g = g.to_vec::<f64>().unwrap_or_else(|e| panic!("{name}: gradient {i}: {e}"));
        let base = x.to_vec::<f64>().unwrap();
        let n = base.len();
        let picks: Vec<usize> = (0..6).map(|k| (k * 7919 + i * 31) % n).collect();
        for &j in &picks {
            let eval = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                let mut args = inputs.clone();
                args[i] = Array::from_slice(&v, x.shape());
                loss(&args).item::<f64>().unwrap()
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            assert!(
                (fd - g[j]).abs() <= 1e-6 * fd.abs().max(1.0),
                "{name}: d/d input{i}[{j}]: autodiff {} vs finite differences {fd}",
                g[j]
            );
        }
        assert!(g.iter().any(|v| *v != 0.0), "{name}: gradient {i} is all zero");
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let x = f64_array(&[2, 5, 6, 4], 1);
    let w = f64_array(&[6, 3, 2, 2], 2);
    let bias = f64_array(&[6], 3);
    let cot = f64_array(&[2, 3, 6, 6], 4);
    let template = Conv2d::with_options(4, 6, (3, 2), (2, 1), (1, 1), (1, 2), 2, true).unwrap();
    check_gradients("Conv2d", vec![x, w, bias], |p| {
        let mut m = template.clone();
        m.weight = p[1].clone();
        m.bias = Some(p[2].clone());
        ops::sum(&(&m.forward(&p[0]) * &cot), None, false)
    });
    let tx = f64_array(&[1, 3, 2, 3], 5);
    let tw = f64_array(&[2, 3, 2, 3], 6);
    let tcot = f64_array(&[1, 8, 2, 2], 7);
    let tt = ConvTranspose2d::with_options(3, 2, (3, 2), (2, 2), (0, 1), 1usize, (1, 0), false);
    check_gradients("ConvTranspose2d", vec![tx, tw], |p| {
        let mut m = tt.clone();
        m.weight = p[1].clone();
        ops::sum(&(&m.forward(&p[0]) * &tcot), None, false)
    });
}

#[test]
fn lstm_and_gru_gradients_match_finite_differences() {
    let (d, h) = (3, 4);
    let x = f64_array(&[2, 4, d], 11);
    let wx = f64_array(&[4 * h, d], 12);
    let wh = f64_array(&[4 * h, h], 13);
    let bias = f64_array(&[4 * h], 14);
    let h0 = f64_array(&[2, h], 15);
    let c0 = f64_array(&[2, h], 16);
    let (r1, r2) = (f64_array(&[2, 4, h], 17), f64_array(&[2, 4, h], 18));
    let template = LSTM::new(d, h, true);
    check_gradients("LSTM", vec![x.clone(), wx, wh, bias, h0.clone(), c0], |p| {
        let mut m = template.clone();
        m.Wx = p[1].clone();
        m.Wh = p[2].clone();
        m.bias = Some(p[3].clone());
        let (hs, cs) = m.forward(&p[0], Some(&p[4]), Some(&p[5]));
        &ops::sum(&(&hs * &r1), None, false) + &ops::sum(&(&cs * &r2), None, false)
    });
    let gx = f64_array(&[3 * h, d], 21);
    let gh = f64_array(&[3 * h, h], 22);
    let gb = f64_array(&[3 * h], 23);
    let gbhn = f64_array(&[h], 24);
    let gru = GRU::new(d, h, true);
    check_gradients("GRU", vec![x, gx, gh, gb, gbhn, h0], |p| {
        let mut m = gru.clone();
        m.Wx = p[1].clone();
        m.Wh = p[2].clone();
        m.b = Some(p[3].clone());
        m.bhn = Some(p[4].clone());
        ops::sum(&(&m.forward(&p[0], Some(&p[5])) * &r1), None, false)
    });
}

#[test]
fn pooling_and_norm_gradients_match_finite_differences() {
    let x = f64_array(&[2, 5, 4, 3], 31);
    let cot = f64_array(&[2, 3, 3, 3], 32);
    let mp = MaxPool2d::with_options((3, 2), (2, 1), (1, 0)).unwrap();
    check_gradients("MaxPool2d", vec![x.clone()], |p| ops::sum(&(&mp.forward(&p[0]) * &cot), None, false));
    let ap = AvgPool2d::with_options(3usize, 2usize, 1usize).unwrap();
    let acot = f64_array(&[2, 3, 2, 3], 34);
    check_gradients("AvgPool2d", vec![x.clone()], |p| ops::sum(&(&ap.forward(&p[0]) * &acot), None, false));
    let cot2 = f64_array(&[2, 5, 4, 3], 33);
    let gn = GroupNorm::with_options(3, 3, 1e-5, false, false).unwrap();
    check_gradients("GroupNorm", vec![x.clone()], |p| ops::sum(&(&gn.forward(&p[0]) * &cot2), None, false));
    let bn = BatchNorm::with_options(3, 1e-5, 0.1, false, false).unwrap();
    check_gradients("BatchNorm", vec![x], |p| ops::sum(&(&bn.forward(&p[0]) * &cot2), None, false));
}

// ------------------------------------------------------------------ errors

#[test]
fn wrong_inputs_are_errors_naming_the_shape() {
    let conv = Conv2d::new(3, 4, 3);
    let e = err_of(&conv.forward(&ops::zeros(&[5, 5, 3], Dtype::Float32)));
    assert!(e.contains("Conv2d") && e.contains("[5, 5, 3]") && e.contains("[N, H, W, C]"), "{e}");
    let e = err_of(&conv.forward(&ops::zeros(&[1, 5, 5, 2], Dtype::Float32)));
    assert!(e.contains("Conv2d") && e.contains("3 input channels") && e.contains("[1, 5, 5, 2]"), "{e}");
    let e = err_of(&Conv1d::new(2, 2, 3).forward(&ops::zeros(&[1, 2, 2], Dtype::Float32)));
    assert!(e.contains("Conv1d"), "{e}");
    let e = err_of(&ConvTranspose3d::new(2, 2, 2).forward(&ops::zeros(&[1, 2, 2, 2], Dtype::Float32)));
    assert!(e.contains("ConvTranspose3d") && e.contains("[1, 2, 2, 2]"), "{e}");

    let e = err_of(&MaxPool2d::new(2usize).unwrap().forward(&ops::zeros(&[4, 4, 3], Dtype::Float32)));
    assert!(e.contains("MaxPool2d") && e.contains("[4, 4, 3]"), "{e}");
    let e = err_of(&AvgPool1d::new(5usize).unwrap().forward(&ops::zeros(&[1, 3, 2], Dtype::Float32)));
    assert!(e.contains("AvgPool1d") && e.contains("kernel"), "{e}");

    let e = err_of(&BatchNorm::new(4).forward(&ops::zeros(&[2, 3], Dtype::Float32)));
    assert!(e.contains("BatchNorm") && e.contains("[2, 3]"), "{e}");
    let e = err_of(&BatchNorm::new(3).forward(&ops::zeros(&[1, 2, 2, 2, 3], Dtype::Float32)));
    assert!(e.contains("BatchNorm") && e.contains("[1, 2, 2, 2, 3]"), "{e}");
    let e = err_of(&BatchNorm::new(3).forward_train(&ops::zeros(&[1, 3], Dtype::Float32)));
    assert!(e.contains("more than one value"), "{e}");
    let e = err_of(&GroupNorm::new(2, 4).unwrap().forward(&ops::zeros(&[2, 3, 6], Dtype::Float32)));
    assert!(e.contains("GroupNorm") && e.contains("[2, 3, 6]"), "{e}");
    let e = err_of(&InstanceNorm::new(3).forward(&ops::zeros(&[4, 3], Dtype::Float32)));
    assert!(e.contains("InstanceNorm") && e.contains("[4, 3]"), "{e}");

    let mha = MultiHeadAttention::new(8, 2).unwrap();
    let q = ops::zeros(&[2, 3, 8], Dtype::Float32);
    let e = err_of(&mha.forward(&q, &ops::zeros(&[2, 4, 6], Dtype::Float32), &q, None));
    assert!(e.contains("MultiHeadAttention") && e.contains("keys") && e.contains("[2, 4, 6]"), "{e}");
    let e = err_of(&mha.forward(&ops::zeros(&[3, 8], Dtype::Float32), &q, &q, None));
    assert!(e.contains("queries") && e.contains("[3, 8]"), "{e}");

    let e = err_of(&LSTM::new(3, 4, true).forward(&ops::zeros(&[2, 5, 2], Dtype::Float32), None, None).0);
    assert!(e.contains("LSTM") && e.contains("[2, 5, 2]"), "{e}");
    let e = err_of(&GRU::new(3, 4, true).forward(&ops::zeros(&[2, 5, 3], Dtype::Float32), Some(&ops::zeros(&[3, 4], Dtype::Float32))));
    assert!(e.contains("GRU") && e.contains("hidden") && e.contains("[3, 4]"), "{e}");
    // An unbatched state broadcasts over the batch (MLX's addmm does).
    let y = GRU::new(3, 4, true).forward(&ops::zeros(&[2, 5, 3], Dtype::Float32), Some(&ops::ones(&[4], Dtype::Float32)));
    assert_eq!(y.shape(), &[2, 5, 4]);
    y.check().unwrap();
    let e = err_of(&RNN::new(3, 4).forward(&ops::zeros(&[3], Dtype::Float32), None));
    assert!(e.contains("RNN") && e.contains("[3]"), "{e}");

    let e = err_of(&Bilinear::new(4, 5, 3, true).forward(&ops::zeros(&[2, 4], Dtype::Float32), &ops::zeros(&[2, 4], Dtype::Float32)));
    assert!(e.contains("Bilinear") && e.contains("[2, 4]"), "{e}");
    let e = err_of(&RoPE::new(8).forward(&ops::zeros(&[4, 8], Dtype::Float32), 0usize));
    assert!(e.contains("rope") && e.contains("[4, 8]"), "{e}");
    let e = err_of(&RoPE::new(16).forward(&ops::zeros(&[1, 4, 8], Dtype::Float32), 0usize));
    assert!(e.contains("dims"), "{e}");
    let e = err_of(&Upsample::new(&[2.0], "linear", false).unwrap().forward(&ops::zeros(&[4, 3], Dtype::Float32)));
    assert!(e.contains("Upsample") && e.contains("[4, 3]"), "{e}");
    let e = err_of(&Upsample::new(&[2.0, 2.0], "linear", false).unwrap().forward(&ops::zeros(&[1, 4, 3], Dtype::Float32)));
    assert!(e.contains("Upsample") && e.contains("[1, 4, 3]"), "{e}");
    let e = err_of(&ALiBi::new().forward(&ops::zeros(&[2, 3, 4], Dtype::Float32), 0, None));
    assert!(e.contains("ALiBi") && e.contains("[2, 3, 4]"), "{e}");
}

#[test]
fn layers_compose_in_sequential() {
    let mut net = Sequential::new()
        .push(Conv2d::with_options(3, 4, 3, 1usize, 1usize, 1usize, 1, true).unwrap())
        .push(BatchNorm::new(4))
        .push(ReLU)
        .push(MaxPool2d::new(2usize).unwrap())
        .push(Upsample::new(&[2.0], "linear", true).unwrap())
        .push(GroupNorm::new(2, 4).unwrap());
    let y = net.forward(&f64_array(&[2, 6, 6, 3], 41).astype(Dtype::Float32));
    assert_eq!(y.shape(), &[2, 6, 6, 4]);
    y.check().unwrap();
    let all = net.parameters();
    assert!(all.contains_key("layers.0.weight") && all.contains_key("layers.1.running_var") && all.contains_key("layers.5.bias"));
    let trainable = net.trainable_parameters();
    assert!(!trainable.contains_key("layers.1.running_mean") && trainable.contains_key("layers.1.weight"));
    assert_eq!(all.len(), trainable.len() + 2);
    net.set_eval();
    assert_eq!(net.forward(&ops::zeros(&[1, 4, 4, 3], Dtype::Float32)).shape(), &[1, 4, 4, 4]);
}
