//! `Tree`: the containers transforms accept as function inputs and outputs — arrays, tuples,
//! `Vec`, `Option`, `BTreeMap<String, _>`, fixed arrays, and user structs that implement it (the
//! nn issue derives it). Leaves are always `Array`s, so a non-array leaf is a compile error in
//! Rust (the Python layer reports it at run time).

use crate::array::Array;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

pub trait Tree: Sized {
    /// Appends the leaves in a fixed order (depth first, map keys sorted).
    fn flatten_into(&self, out: &mut Vec<Array>);
    /// Rebuilds a tree of this tree's structure from leaves in `flatten_into`'s order.
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self>;
    /// A description of the structure (not the leaves), for cache keys and error messages.
    fn structure(&self, out: &mut String);
}

/// The leaves of `tree` in order.
pub fn tree_flatten<T: Tree>(tree: &T) -> Vec<Array> {
    let mut v = Vec::new();
    tree.flatten_into(&mut v);
    v
}

/// A tree shaped like `like` holding `leaves`; errors if the count differs.
pub fn tree_unflatten<T: Tree>(like: &T, leaves: Vec<Array>) -> Result<T> {
    let n = leaves.len();
    let mut it = leaves.into_iter();
    let t = like.rebuild(&mut it)?;
    if it.next().is_some() {
        return Err(Error::invalid(format!("[tree_unflatten] {n} leaves given for a tree of structure {}", tree_structure(like))));
    }
    Ok(t)
}

/// `tree` with `f` applied to every leaf.
pub fn tree_map<T: Tree>(tree: &T, mut f: impl FnMut(&Array) -> Array) -> Result<T> {
    let leaves = tree_flatten(tree).iter().map(&mut f).collect();
    tree_unflatten(tree, leaves)
}

pub fn tree_structure<T: Tree>(tree: &T) -> String {
    let mut s = String::new();
    tree.structure(&mut s);
    s
}

fn missing_leaf() -> Error {
    Error::invalid("[tree_unflatten] too few leaves for the tree structure")
}

impl Tree for Array {
    fn flatten_into(&self, out: &mut Vec<Array>) {
        out.push(self.clone());
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self> {
        leaves.next().ok_or_else(missing_leaf)
    }
    fn structure(&self, out: &mut String) {
        out.push('*');
    }
}

impl Tree for () {
    fn flatten_into(&self, _: &mut Vec<Array>) {}
    fn rebuild(&self, _: &mut dyn Iterator<Item = Array>) -> Result<Self> {
        Ok(())
    }
    fn structure(&self, out: &mut String) {
        out.push_str("()");
    }
}

impl<T: Tree> Tree for Vec<T> {
    fn flatten_into(&self, out: &mut Vec<Array>) {
        self.iter().for_each(|t| t.flatten_into(out));
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self> {
        self.iter().map(|t| t.rebuild(leaves)).collect()
    }
    fn structure(&self, out: &mut String) {
        out.push('[');
        for t in self {
            t.structure(out);
            out.push(',');
        }
        out.push(']');
    }
}

impl<T: Tree, const N: usize> Tree for [T; N] {
    fn flatten_into(&self, out: &mut Vec<Array>) {
        self.iter().for_each(|t| t.flatten_into(out));
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self> {
        let v: Vec<T> = self.iter().map(|t| t.rebuild(leaves)).collect::<Result<_>>()?;
        v.try_into().map_err(|_| missing_leaf())
    }
    fn structure(&self, out: &mut String) {
        out.push_str(&format!("[{N};"));
        self.iter().for_each(|t| t.structure(out));
        out.push(']');
    }
}

impl<T: Tree> Tree for Option<T> {
    fn flatten_into(&self, out: &mut Vec<Array>) {
        if let Some(t) = self {
            t.flatten_into(out);
        }
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self> {
        self.as_ref().map(|t| t.rebuild(leaves)).transpose()
    }
    fn structure(&self, out: &mut String) {
        match self {
            Some(t) => {
                out.push_str("Some(");
                t.structure(out);
                out.push(')');
            }
            None => out.push_str("None"),
        }
    }
}

impl<T: Tree> Tree for BTreeMap<String, T> {
    fn flatten_into(&self, out: &mut Vec<Array>) {
        self.values().for_each(|t| t.flatten_into(out));
    }
    fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self> {
        self.iter().map(|(k, t)| Ok((k.clone(), t.rebuild(leaves)?))).collect()
    }
    fn structure(&self, out: &mut String) {
        out.push('{');
        for (k, t) in self {
            out.push_str(&format!("{k:?}:"));
            t.structure(out);
            out.push(',');
        }
        out.push('}');
    }
}

macro_rules! tuple_tree {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Tree),+> Tree for ($($T,)+) {
            fn flatten_into(&self, out: &mut Vec<Array>) {
                $(self.$i.flatten_into(out);)+
            }
            fn rebuild(&self, leaves: &mut dyn Iterator<Item = Array>) -> Result<Self> {
                Ok(($(self.$i.rebuild(leaves)?,)+))
            }
            fn structure(&self, out: &mut String) {
                out.push('(');
                $(self.$i.structure(out); out.push(',');)+
                out.push(')');
            }
        }
    };
}
tuple_tree!(A 0);
tuple_tree!(A 0, B 1);
tuple_tree!(A 0, B 1, C 2);
tuple_tree!(A 0, B 1, C 2, D 3);
tuple_tree!(A 0, B 1, C 2, D 3, E 4);
tuple_tree!(A 0, B 1, C 2, D 3, E 4, F 5);
