//! `Node`: what a field of a derived `Module` can be. Arrays are parameters, modules are children,
//! containers recurse with their index or key as the path segment, and plain configuration values
//! (numbers, strings, shapes) are neither.

use crate::module::Module;
use oxmx_core::Array;
use std::collections::BTreeMap;

/// `prefix.name`, or `name` at the root.
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

pub trait Node {
    /// Parameters owned directly (not through a child module).
    fn visit_local_params<'a>(&'a self, _path: &str, _f: &mut dyn FnMut(&str, &'a Array)) {}
    fn visit_local_params_mut(&mut self, _path: &str, _f: &mut dyn FnMut(&str, &mut Array)) {}
    /// The nearest modules at or below this node.
    fn visit_child_modules<'a>(&'a self, _path: &str, _f: &mut dyn FnMut(&str, &'a dyn Module)) {}
    fn visit_child_modules_mut(&mut self, _path: &str, _f: &mut dyn FnMut(&str, &mut dyn Module)) {}
}

impl Node for Array {
    fn visit_local_params<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a Array)) {
        f(path, self)
    }
    fn visit_local_params_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut Array)) {
        f(path, self)
    }
}

impl<M: Module> Node for M {
    fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
        f(path, self)
    }
    fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        f(path, self)
    }
}

impl Node for Box<dyn Module> {
    fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
        f(path, self.as_ref())
    }
    fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        f(path, self.as_mut())
    }
}

impl Node for Box<dyn crate::UnaryModule> {
    fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
        f(path, self.as_ref())
    }
    fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        f(path, self.as_mut())
    }
}

/// Sequences: one path segment per element (`layers.0`, `layers.1`).
macro_rules! seq_node {
    ($([$($g:tt)*] $ty:ty;)*) => {$(
        impl<$($g)*> Node for $ty {
            fn visit_local_params<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a Array)) {
                self.iter().enumerate().for_each(|(i, t)| t.visit_local_params(&join_path(path, &i.to_string()), f))
            }
            fn visit_local_params_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut Array)) {
                self.iter_mut().enumerate().for_each(|(i, t)| t.visit_local_params_mut(&join_path(path, &i.to_string()), f))
            }
            fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
                self.iter().enumerate().for_each(|(i, t)| t.visit_child_modules(&join_path(path, &i.to_string()), f))
            }
            fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
                self.iter_mut().enumerate().for_each(|(i, t)| t.visit_child_modules_mut(&join_path(path, &i.to_string()), f))
            }
        }
    )*};
}
seq_node! {
    [T: Node] Vec<T>;
    [T: Node, const N: usize] [T; N];
}

/// `None` contributes nothing; `Some(x)` is `x` at the same path (MLX drops `None` attributes).
impl<T: Node> Node for Option<T> {
    fn visit_local_params<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a Array)) {
        if let Some(t) = self {
            t.visit_local_params(path, f)
        }
    }
    fn visit_local_params_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut Array)) {
        if let Some(t) = self {
            t.visit_local_params_mut(path, f)
        }
    }
    fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
        if let Some(t) = self {
            t.visit_child_modules(path, f)
        }
    }
    fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        if let Some(t) = self {
            t.visit_child_modules_mut(path, f)
        }
    }
}

impl<T: Node> Node for BTreeMap<String, T> {
    fn visit_local_params<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a Array)) {
        self.iter().for_each(|(k, t)| t.visit_local_params(&join_path(path, k), f))
    }
    fn visit_local_params_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut Array)) {
        self.iter_mut().for_each(|(k, t)| t.visit_local_params_mut(&join_path(path, k), f))
    }
    fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
        self.iter().for_each(|(k, t)| t.visit_child_modules(&join_path(path, k), f))
    }
    fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        self.iter_mut().for_each(|(k, t)| t.visit_child_modules_mut(&join_path(path, k), f))
    }
}

/// Configuration values: neither parameters nor modules.
macro_rules! plain_node {
    ($($ty:ty),*) => {$( impl Node for $ty {} )*};
}
plain_node!(bool, u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64, String, &'static str, oxmx_core::Dtype);

/// Tuples: one path segment per position, like a list.
macro_rules! tuple_node {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Node),+> Node for ($($T,)+) {
            fn visit_local_params<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a Array)) {
                $( self.$i.visit_local_params(&join_path(path, stringify!($i)), f); )+
            }
            fn visit_local_params_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut Array)) {
                $( self.$i.visit_local_params_mut(&join_path(path, stringify!($i)), f); )+
            }
            fn visit_child_modules<'a>(&'a self, path: &str, f: &mut dyn FnMut(&str, &'a dyn Module)) {
                $( self.$i.visit_child_modules(&join_path(path, stringify!($i)), f); )+
            }
            fn visit_child_modules_mut(&mut self, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
                $( self.$i.visit_child_modules_mut(&join_path(path, stringify!($i)), f); )+
            }
        }
    };
}
tuple_node!(A 0, B 1);
tuple_node!(A 0, B 1, C 2);
