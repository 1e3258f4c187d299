//! `#[derive(Module)]`: visitors over the fields, which `oxmx_nn` turns into `parameters`,
//! `update`, `named_modules`, `freeze`, `train`, `load_weights`, ...
//!
//! Every non-skipped field must implement `oxmx_nn::Node` (arrays, modules, `Vec`/`Option`/
//! `BTreeMap<String, _>` of those, and plain configuration values such as numbers and strings).

use crate::attrs::struct_fields;
use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let fields = struct_fields(input)?;
    let ident = &input.ident;
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    let states: Vec<_> = fields.iter().filter(|f| f.is_state && !f.skip).collect();
    if states.len() > 1 {
        return Err(syn::Error::new_spanned(&states[1].field.ty, "a module has at most one ModuleState field"));
    }
    let nodes: Vec<_> = fields.iter().filter(|f| !f.skip && !f.is_state).collect();
    let visit = |method: TokenStream, by_ref: TokenStream| -> Vec<TokenStream> {
        nodes
            .iter()
            .map(|f| {
                let acc = &f.access;
                let name = &f.name;
                quote!(::oxmx_nn::Node::#method(#by_ref self.#acc, &::oxmx_nn::join_path(prefix, #name), f);)
            })
            .collect()
    };
    let local = visit(quote!(visit_local_params), quote!(&));
    let local_mut = visit(quote!(visit_local_params_mut), quote!(&mut));
    let children = visit(quote!(visit_child_modules), quote!(&));
    let children_mut = visit(quote!(visit_child_modules_mut), quote!(&mut));
    let (state, state_mut) = match states.first() {
        Some(s) => {
            let acc = &s.access;
            (quote!(::core::option::Option::Some(&self.#acc)), quote!(::core::option::Option::Some(&mut self.#acc)))
        }
        None => (quote!(::core::option::Option::None), quote!(::core::option::Option::None)),
    };
    let buffers: Vec<&str> = nodes.iter().filter(|f| f.buffer).map(|f| f.name.as_str()).collect();
    let type_name = ident.to_string();
    // `#[module(quantizable)]` on the struct: `nn::quantize` reaches the type's
    // `Quantizable` impl through this hook (trait objects cannot be downcast otherwise).
    let mut quantizable = false;
    for attr in &input.attrs {
        if attr.path().is_ident("module") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("quantizable") {
                    quantizable = true;
                    Ok(())
                } else {
                    Err(meta.error("unknown struct attribute: expected `quantizable`"))
                }
            })?;
        }
    }
    let hook = if quantizable {
        quote! {
            fn quantizable(&mut self) -> ::core::option::Option<&mut dyn ::oxmx_nn::Quantizable> {
                ::core::option::Option::Some(self)
            }
        }
    } else {
        quote!()
    };
    Ok(quote! {
        impl #impl_g ::oxmx_nn::Module for #ident #ty_g #where_c {
            fn type_name(&self) -> &'static str {
                #type_name
            }
            fn visit_local_params<'__a>(&'__a self, prefix: &str, f: &mut dyn FnMut(&str, &'__a ::oxmx_nn::Array)) {
                #(#local)*
            }
            fn visit_local_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut ::oxmx_nn::Array)) {
                #(#local_mut)*
            }
            fn visit_children<'__a>(&'__a self, prefix: &str, f: &mut dyn FnMut(&str, &'__a dyn ::oxmx_nn::Module)) {
                #(#children)*
            }
            fn visit_children_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut dyn ::oxmx_nn::Module)) {
                #(#children_mut)*
            }
            fn buffer_names(&self) -> &'static [&'static str] {
                &[#(#buffers),*]
            }
            #hook
            fn as_dyn(&self) -> &dyn ::oxmx_nn::Module {
                self
            }
            fn as_dyn_mut(&mut self) -> &mut dyn ::oxmx_nn::Module {
                self
            }
            fn state(&self) -> ::core::option::Option<&::oxmx_nn::ModuleState> {
                #state
            }
            fn state_mut(&mut self) -> ::core::option::Option<&mut ::oxmx_nn::ModuleState> {
                #state_mut
            }
        }
    })
}
