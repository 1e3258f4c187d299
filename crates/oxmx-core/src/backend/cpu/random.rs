//! CPU kernels of the random family: threefry2x32 (20 rounds) in counter mode.
//!
//! For `n` words with key `k`, `h = n / 2` and `o = n % 2`: the counter pair `(i, i + h + o)`
//! gives words `i` and `i + h + o` for `i < h`, and for odd `n` word `h` is the first output of
//! the pair `(h, 0)`. This is the layout MLX produces (checked against it in the tests).

use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::RandomOp;
use rayon::prelude::*;

/// threefry2x32 with 20 rounds.
#[inline]
pub fn threefry2x32(key: [u32; 2], ctr: [u32; 2]) -> [u32; 2] {
    const ROT: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
    let ks = [key[0], key[1], 0x1BD1_1BDA ^ key[0] ^ key[1]];
    let mut x0 = ctr[0].wrapping_add(ks[0]);
    let mut x1 = ctr[1].wrapping_add(ks[1]);
    for i in 0..5usize {
        for &r in &ROT[i % 2] {
            x0 = x0.wrapping_add(x1);
            x1 = x1.rotate_left(r) ^ x0;
        }
        x0 = x0.wrapping_add(ks[(i + 1) % 3]);
        x1 = x1.wrapping_add(ks[(i + 2) % 3]).wrapping_add(i as u32 + 1);
    }
    [x0, x1]
}

/// Fills `out` with the words of one key (see the module docs for the layout).
pub fn fill_bits(key: [u32; 2], out: &mut [u32]) {
    let n = out.len();
    let h = n / 2;
    let odd = n % 2;
    let (lo, hi) = out.split_at_mut(h);
    let (mid, hi) = hi.split_at_mut(odd);
    const PAR: usize = 1 << 15;
    let pair = |i: usize| threefry2x32(key, [i as u32, (i + h + odd) as u32]);
    if h >= PAR {
        lo.par_iter_mut().zip(hi.par_iter_mut()).enumerate().for_each(|(i, (a, b))| {
            let r = pair(i);
            *a = r[0];
            *b = r[1];
        });
    } else {
        for (i, (a, b)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
            let r = pair(i);
            *a = r[0];
            *b = r[1];
        }
    }
    if odd == 1 {
        mid[0] = threefry2x32(key, [h as u32, 0])[0];
    }
}

pub fn eval(op: &RandomOp, inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    match op {
        RandomOp::Bits { shape } => {
            let k = inputs[0].row_major::<u32>();
            let key = [k[0], k[1]];
            Ok(vec![Data::build::<u32>(shape.clone(), |out| fill_bits(key, out))?])
        }
    }
}
