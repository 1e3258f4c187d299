//! Distributed collectives over MPI with 2 and 4 ranks on this machine: each test below starts
//! `mpirun` on this very test binary, whose `worker_*` tests (ignored in a normal run) do the
//! rank's part and check it against what every rank can compute locally (each rank's input is
//! a deterministic function of its rank, so the oracle is a plain sum, max, concatenation).
//! Without `mpirun` (Open MPI: `apt-get install openmpi-bin libopenmpi-dev`) they skip, saying so.

mod common;
use common::gradcheck::Rng;
use oxmx_core::distributed::{self as dist, Group};
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::{compile, grad, vmap};
use std::time::Duration;

use common::mpi::{mpirun, run_ranks, WORKER_ENV};

#[test]
fn collectives_on_2_and_4_ranks() {
    if mpirun().is_none() {
        return;
    }
    for n in [2, 4] {
        let (ok, out, secs) = run_ranks(n, "worker_collectives", Duration::from_secs(300));
        assert!(ok, "{n} ranks failed:\n{out}");
        assert_eq!(out.matches("worker_collectives ok").count(), n, "{n} ranks: every rank reports\n{out}");
        eprintln!("{n} ranks: collectives checked in {secs:.1}s");
    }
}

#[test]
fn a_dead_rank_stops_the_others() {
    if mpirun().is_none() {
        return;
    }
    let (ok, out, secs) = run_ranks(2, "worker_dies", Duration::from_secs(120));
    assert!(!out.starts_with("TIMED OUT"), "the surviving rank hung:\n{out}");
    assert!(!ok, "mpirun should report the failure:\n{out}");
    assert!(out.contains("rank 1") || out.contains("signal"), "the message names the dead rank or its signal:\n{out}");
    assert!(!out.contains("worker_dies survivor finished"), "rank 0 cannot have finished its all_sum:\n{out}");
    eprintln!("a dead rank ended the job in {secs:.1}s");
}

#[test]
fn without_a_launcher_the_group_has_one_rank() {
    if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some() {
        return;
    }
    let g = dist::init(false, "any").unwrap();
    assert_eq!((g.rank(), g.size(), g.backend()), (0, 1, "singleton"));
    let x = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]);
    assert_eq!(dist::all_sum(&x, None).to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(dist::all_gather(&Array::scalar(5i32), None).shape(), &[1]);
    let e = dist::send(&x, 1, None).check().unwrap_err();
    assert!(e.message().contains("out of range"), "{e}");
    let e = dist::init(true, "any").unwrap_err();
    assert!(e.message().contains("oxmx launch"), "{e}");
    let e = dist::init(false, "gloo").unwrap_err();
    assert!(e.message().contains("unknown backend"), "{e}");
}

// ---- the ranks' side

/// The rank's group: MPI under mpirun; `OXMX_TEST_DIST_BACKEND=nccl` (with `oxmx launch
/// --backend nccl`) runs the same checks on GPUs.
fn worker() -> Option<Group> {
    std::env::var_os(WORKER_ENV)?;
    let backend = std::env::var("OXMX_TEST_DIST_BACKEND").unwrap_or_else(|_| "mpi".into());
    Some(dist::init(true, &backend).unwrap_or_else(|e| panic!("the {backend} backend starts: {e}")))
}

const DTYPES: &[Dtype] = &[
    Dtype::Float32,
    Dtype::Float16,
    Dtype::Bfloat16,
    Dtype::Float64,
    Dtype::Int32,
    Dtype::Int64,
    Dtype::Int8,
    Dtype::Uint8,
    Dtype::Uint16,
    Dtype::Uint32,
    Dtype::Bool,
];
const SHAPES: &[&[usize]] = &[&[], &[7], &[4, 5], &[2, 3, 4], &[0, 3]];

/// Rank `r`'s input for a case, the same on every rank that computes it.
fn input(r: usize, case: u64, shape: &[usize], dt: Dtype) -> Array {
    let mut rng = Rng::new(case * 1000 + r as u64 + 1);
    let x = match dt {
        Dtype::Bool => rng.uniform(shape, 0.0, 1.0).astype(Dtype::Float64) * 1.0,
        d if d.is_float() => rng.uniform(shape, -2.0, 2.0),
        // Small integers: sums stay exact and in range for every integer type.
        d if d.is_signed_integer() => floor(&rng.uniform(shape, -5.0, 5.0)),
        _ => floor(&rng.uniform(shape, 0.0, 10.0)),
    };
    if dt == Dtype::Bool {
        return greater(&x, 0.5);
    }
    x.astype(dt)
}

fn tol(dt: Dtype) -> f64 {
    match dt {
        Dtype::Float16 => 4e-3,
        Dtype::Bfloat16 => 3e-2,
        Dtype::Float32 => 1e-5,
        _ => 1e-12,
    }
}

fn assert_close(what: &str, got: &Array, want: &Array, dt: Dtype) {
    got.check().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), dt, "{what}: dtype");
    let (g, w) = (got.astype(Dtype::Float64), want.astype(Dtype::Float64));
    let t = tol(dt);
    let ok = allclose(&g, &w, t, t, false).item::<bool>().unwrap();
    assert!(ok, "{what}: got {g} want {w}");
}

#[test]
#[ignore]
fn worker_collectives() {
    let Some(g) = worker() else { return };
    let (rank, n) = (g.rank(), g.size());
    let mut case = 0u64;
    for &dt in DTYPES {
        // NCCL has no 16-bit integer reductions (the op says so; see the error test below).
        if g.backend() == "nccl" && dt == Dtype::Uint16 {
            assert!(dist::all_sum(&input(rank, 0, &[2], dt), Some(&g)).eval().is_err(), "uint16 all_sum on NCCL is an error");
            continue;
        }
        for &shape in SHAPES {
            case += 1;
            let what = format!("rank {rank}/{n} {dt} {shape:?}");
            let xs: Vec<Array> = (0..n).map(|r| input(r, case, shape, dt)).collect();
            let mine = &xs[rank];
            let as64: Vec<Array> = xs.iter().map(|x| x.astype(Dtype::Float64)).collect();
            let (mut s, mut mx, mut mn) = (as64[0].clone(), as64[0].clone(), as64[0].clone());
            for x in &as64[1..] {
                s = &s + x;
                mx = maximum(&mx, x);
                mn = minimum(&mn, x);
            }
            // Booleans: a sum is a logical or.
            let s = if dt == Dtype::Bool { greater(&s, 0.0) } else { s };
            assert_close(&format!("all_sum {what}"), &dist::all_sum(mine, Some(&g)), &s, dt);
            assert_close(&format!("all_max {what}"), &dist::all_max(mine, Some(&g)), &mx, dt);
            assert_close(&format!("all_min {what}"), &dist::all_min(mine, Some(&g)), &mn, dt);
            let gathered: Vec<Array> = xs.iter().map(|x| if x.ndim() == 0 { reshape(x, &[1]) } else { x.clone() }).collect();
            assert_close(&format!("all_gather {what}"), &dist::all_gather(mine, Some(&g)), &concatenate(&gathered, 0), dt);
            if dt != Dtype::Bool && !shape.is_empty() {
                // reduce_scatter needs axis 0 to divide by n: stack n copies' worth of rows.
                let tall: Vec<Array> = (0..n).map(|r| concatenate(&vec![input(r, case + 500, shape, dt); n], 0)).collect();
                let mut total = tall[0].astype(Dtype::Float64);
                for t in &tall[1..] {
                    total = &total + &t.astype(Dtype::Float64);
                }
                let k = shape[0] as isize;
                let mut lo = vec![0isize; shape.len()];
                let mut hi: Vec<isize> = total.shape().iter().map(|&d| d as isize).collect();
                lo[0] = rank as isize * k;
                hi[0] = lo[0] + k;
                let want = slice_range(&total, &lo, &hi);
                assert_close(&format!("reduce_scatter {what}"), &dist::reduce_scatter(&tall[rank], Some(&g)), &want, dt);
            }
            // A ring: send to the next rank, receive from the previous one.
            let (next, prev) = ((rank + 1) % n, (rank + n - 1) % n);
            let sent = dist::send(mine, next, Some(&g));
            let got = dist::recv_like(mine, prev, Some(&g));
            if g.backend() == "nccl" {
                // NCCL's point-to-point calls block their stream until the peer matches them:
                // even ranks send first, odd ranks receive first.
                let (a, b) = if rank % 2 == 0 { (&sent, &got) } else { (&got, &sent) };
                a.eval().unwrap_or_else(|e| panic!("ring {what}: {e}"));
                b.eval().unwrap_or_else(|e| panic!("ring {what}: {e}"));
            } else {
                // MPI sends never block the stream: any order works.
                eval(&[&sent, &got]).unwrap_or_else(|e| panic!("ring {what}: {e}"));
            }
            assert_close(&format!("recv {what}"), &got, &xs[prev].astype(Dtype::Float64), dt);
        }
    }
    complex_and_views(&g);
    derivatives(&g);
    split_groups(&g);
    println!("worker_collectives ok rank {rank}");
}

fn complex_and_views(g: &Group) {
    let (rank, n) = (g.rank() as f32, g.size() as f32);
    // complex64 sums; max is not defined for it.
    let z = &Array::from_slice(&[1.0f32, 2.0], &[2]).astype(Dtype::Complex64) * (rank + 1.0);
    let s = dist::all_sum(&z, Some(g));
    let want = n * (n + 1.0) / 2.0;
    assert_eq!(real(&s).to_vec::<f32>().unwrap(), vec![want, 2.0 * want]);
    assert!(dist::all_max(&z, Some(g)).eval().is_err(), "all_max of complex64 is an error");
    // Non-contiguous inputs: a transpose and a strided slice.
    let base = reshape(&arange(0.0, 12.0, 1.0, Some(Dtype::Float32)), &[3, 4]) + rank;
    let t = transpose(&base, &[1, 0]);
    let want = transpose(&(reshape(&arange(0.0, 12.0, 1.0, Some(Dtype::Float32)), &[3, 4]) * n + n * (n - 1.0) / 2.0), &[1, 0]);
    assert_close("all_sum of a transpose", &dist::all_sum(&t, Some(g)), &want.astype(Dtype::Float64), Dtype::Float32);
    // Ops after a collective, and a collective of a collective.
    let twice = dist::all_sum(&(dist::all_sum(&Array::scalar(1.0f32), Some(g)) * 2.0), Some(g));
    assert_eq!(twice.item::<f32>().unwrap(), 2.0 * n * n);
}

/// vjp of each collective against central differences of a loss every rank computes alike;
/// vmap against a loop; compile against the plain call.
fn derivatives(g: &Group) {
    let (rank, n) = (g.rank(), g.size());
    let x = input(rank, 900, &[3], Dtype::Float64);
    let c = input(0, 901, &[3 * n], Dtype::Float64);
    let c3 = input(0, 902, &[3], Dtype::Float64);
    let gg = g.clone();
    let losses: Vec<(&str, Box<dyn Fn(&Array) -> Array>)> = vec![
        (
            "all_sum",
            Box::new({
                let (g, c3) = (gg.clone(), c3.clone());
                move |x| sum(&(dist::all_sum(x, Some(&g)) * &c3), None, false)
            }),
        ),
        (
            "all_max",
            Box::new({
                let (g, c3) = (gg.clone(), c3.clone());
                move |x| sum(&(dist::all_max(x, Some(&g)) * &c3), None, false)
            }),
        ),
        (
            "all_gather",
            Box::new({
                let (g, c) = (gg.clone(), c.clone());
                move |x| sum(&(dist::all_gather(x, Some(&g)) * &c), None, false)
            }),
        ),
        (
            "reduce_scatter",
            Box::new({
                let (g, c) = (gg.clone(), c.clone());
                move |x: &Array| {
                    let tall = concatenate(&vec![x.clone(); g.size()], 0);
                    sum(&(dist::all_gather(&dist::reduce_scatter(&tall, Some(&g)), Some(&g)) * &c), None, false)
                }
            }),
        ),
    ];
    let h = 1e-6;
    for (name, f) in &losses {
        let analytic = grad(|v: Vec<Array>| f(&v[0]))(vec![x.clone()]).remove(0);
        let analytic = analytic.to_vec::<f64>().unwrap_or_else(|e| panic!("grad of {name}: {e}"));
        // Rank p moves its element i while the others hold still; everyone evaluates the loss.
        let mut numeric = vec![0.0; 3];
        for p in 0..n {
            for (i, slot) in numeric.iter_mut().enumerate() {
                let bump = |d: f64| {
                    let mut e = vec![0.0; 3];
                    if p == rank {
                        e[i] = d;
                    }
                    f(&(&x + &Array::from_slice(&e, &[3]))).item::<f64>().unwrap()
                };
                let d = (bump(h) - bump(-h)) / (2.0 * h);
                if p == rank {
                    *slot = d;
                }
            }
        }
        for (a, b) in analytic.iter().zip(&numeric) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{name} rank {rank}: vjp {analytic:?} vs differences {numeric:?}");
        }
    }
    // vmap over a batch of 4 equals a loop of 4 collectives.
    let xb = input(rank, 903, &[4, 3], Dtype::Float32);
    for (name, op) in [("all_sum", 0), ("all_gather", 1)] {
        let g2 = g.clone();
        let f = move |x: Array| if op == 0 { dist::all_sum(&x, Some(&g2)) } else { dist::all_gather(&x, Some(&g2)) };
        let batched = vmap(|v: Vec<Array>| f(v[0].clone()), &[Some(0)], &[0])(vec![xb.clone()]);
        let looped = stack(&(0..4).map(|b| f(take(&xb, &Array::scalar(b as i32), Some(0)))).collect::<Vec<_>>(), 0);
        assert_close(&format!("vmap {name}"), &batched, &looped.astype(Dtype::Float64), Dtype::Float32);
    }
    // compile: the traced function runs the same collective.
    let g3 = g.clone();
    let compiled = compile(move |v: Vec<Array>| vec![exp(&dist::all_sum(&(&v[0] * 2.0), Some(&g3)))]);
    let plain = exp(&dist::all_sum(&(&xb * 2.0), Some(g)));
    let got = compiled.call(vec![xb.clone()]).remove(0);
    assert_close("compiled all_sum", &got, &plain.astype(Dtype::Float64), Dtype::Float32);
}

/// Even and odd ranks form two groups; each sums within itself.
fn split_groups(g: &Group) {
    let (rank, n) = (g.rank(), g.size());
    let sub = g.split((rank % 2) as i32, None).expect("split");
    let members: Vec<usize> = (0..n).filter(|r| r % 2 == rank % 2).collect();
    assert_eq!(sub.size(), members.len());
    assert_eq!(sub.rank(), members.iter().position(|&r| r == rank).unwrap());
    let s = dist::all_sum(&Array::scalar(rank as i32), Some(&sub)).item::<i32>().unwrap();
    assert_eq!(s, members.iter().sum::<usize>() as i32, "rank {rank}: sum within its half");
}

/// all_sum bus bandwidth for 256 MB float32 buffers (the figure nccl-tests reports:
/// algorithm bandwidth × 2(n-1)/n).
#[test]
#[ignore]
fn worker_bandwidth() {
    let Some(g) = worker() else { return };
    let n = g.size() as f64;
    let x = full(&[64 << 20], 1.0f32, None);
    x.eval().unwrap();
    let sync = || oxmx_core::synchronize(oxmx_core::default_stream());
    for _ in 0..3 {
        dist::all_sum(&x, Some(&g)).eval().unwrap();
    }
    sync();
    let iters = 20;
    let start = std::time::Instant::now();
    let outs: Vec<Array> = (0..iters).map(|_| dist::all_sum(&x, Some(&g))).collect();
    for o in &outs {
        o.eval().unwrap();
    }
    sync();
    let secs = start.elapsed().as_secs_f64() / iters as f64;
    let algbw = (256u64 << 20) as f64 / secs / 1e9;
    println!(
        "worker_bandwidth rank {} backend {} size 256MB time {:.3} ms algbw {algbw:.1} GB/s busbw {:.1} GB/s",
        g.rank(),
        g.backend(),
        secs * 1e3,
        algbw * 2.0 * (n - 1.0) / n
    );
}

#[test]
#[ignore]
fn worker_dies() {
    let Some(g) = worker() else { return };
    if g.rank() == 1 {
        // A crash, not a clean exit: no MPI_Finalize, no goodbye.
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(200));
    let r = dist::all_sum(&Array::scalar(1.0f32), Some(&g)).eval();
    println!("worker_dies survivor finished: {r:?}");
}
