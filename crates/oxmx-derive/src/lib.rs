//! `#[derive(Tree)]` and `#[derive(Module)]` for oxmx.
//!
//! `Tree` makes a struct usable as a transform input/output (its array leaves in field order).
//! `Module` makes a struct an `oxmx_nn::Module`: its parameters are named by field path
//! (`layers.3.self_attn.q_proj.weight`), which are the checkpoint keys of Hugging Face and MLX.
//!
//! Field attributes (either `#[module(..)]` or `#[tree(..)]`):
//! - `skip`: not a parameter or child (static configuration); `Tree` clones it on rebuild.
//! - `buffer` (Module only): an array kept and saved with the parameters but never trained, such
//!   as BatchNorm's running statistics (MLX freezes these; here `unfreeze` cannot reach them).
//! - `rename = "name"`: the path segment used for this field (e.g. a Rust keyword or a checkpoint
//!   name that is not a Rust identifier).
//!
//! A field whose type is `ModuleState` holds the module's training flag and frozen set.
//! Written by hand with `syn`/`quote`: there is no general derive crate for this shape.

mod attrs;
mod module;
mod tree;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

#[proc_macro_derive(Tree, attributes(tree, module))]
pub fn derive_tree(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    tree::expand(&input).unwrap_or_else(|e| e.to_compile_error()).into()
}

#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    module::expand(&input).unwrap_or_else(|e| e.to_compile_error()).into()
}
