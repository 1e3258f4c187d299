//! The float types the f32-computing kernels accept (fast ops, few-row matmul): slices are
//! widened to f32 for the arithmetic and rounded once when stored.

use crate::dtype::Element;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// The element types with kernels: converted to and from f32 slices.
pub(super) trait KFloat: Element + Copy + Send + Sync {
    fn load(src: &[Self], dst: &mut [f32]);
    fn store(src: &[f32], dst: &mut [Self]);
    /// The slice itself when it already is f32 (kernels then read it in place, no copy).
    #[inline(always)]
    fn as_f32(_src: &[Self]) -> Option<&[f32]> {
        None
    }
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
    #[inline(always)]
    fn as_f32(src: &[f32]) -> Option<&[f32]> {
        Some(src)
    }
}
// half's slice conversions pick F16C at run time.
macro_rules! half_kfloat {
    ($($t:ty),*) => {$(
        impl KFloat for $t {
            #[inline(always)]
            fn load(src: &[$t], dst: &mut [f32]) {
                src.convert_to_f32_slice(dst)
            }
            #[inline(always)]
            fn store(src: &[f32], dst: &mut [$t]) {
                dst.convert_from_f32_slice(src)
            }
        }
    )*};
}
half_kfloat!(f16, bf16);
