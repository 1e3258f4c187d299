//! The float types the f32-computing kernels accept (fast ops, few-row matmul): slices are
//! widened to f32 for the arithmetic and rounded once when stored.

use crate::dtype::Element;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// The element types with kernels: converted to and from f32 slices.
pub(super) trait KFloat: Element + Copy + Send + Sync {
    fn load(src: &[Self], dst: &mut [f32]);
    fn store(src: &[f32], dst: &mut [Self]);
}
impl KFloat for f32 {
    #[inline(always)]
    fn load(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
    #[inline(always)]
    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
}
// half's slice conversions pick F16C at run time.
impl KFloat for f16 {
    #[inline(always)]
    fn load(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    #[inline(always)]
    fn store(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src)
    }
}
impl KFloat for bf16 {
    #[inline(always)]
    fn load(src: &[bf16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    #[inline(always)]
    fn store(src: &[f32], dst: &mut [bf16]) {
        dst.convert_from_f32_slice(src)
    }
}
