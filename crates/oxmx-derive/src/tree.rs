//! `#[derive(Tree)]`: leaves of the non-skipped fields in declaration order.

use crate::attrs::struct_fields;
use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let fields = struct_fields(input)?;
    let ident = &input.ident;
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    let mut flatten = Vec::new();
    let mut rebuild = Vec::new();
    let mut structure = Vec::new();
    for f in &fields {
        let acc = &f.access;
        if f.skip || f.is_state {
            rebuild.push(quote!(#acc: ::core::clone::Clone::clone(&self.#acc)));
            continue;
        }
        let name = &f.name;
        flatten.push(quote!(::oxmx_core::transforms::Tree::flatten_into(&self.#acc, out);));
        rebuild.push(quote!(#acc: ::oxmx_core::transforms::Tree::rebuild(&self.#acc, leaves)?));
        structure.push(quote! {
            out.push_str(#name);
            out.push(':');
            ::oxmx_core::transforms::Tree::structure(&self.#acc, out);
            out.push(',');
        });
    }
    let type_name = ident.to_string();
    Ok(quote! {
        impl #impl_g ::oxmx_core::transforms::Tree for #ident #ty_g #where_c {
            fn flatten_into(&self, out: &mut ::std::vec::Vec<::oxmx_core::Array>) {
                #(#flatten)*
            }
            fn rebuild(
                &self,
                leaves: &mut dyn ::core::iter::Iterator<Item = ::oxmx_core::Array>,
            ) -> ::oxmx_core::Result<Self> {
                ::core::result::Result::Ok(Self { #(#rebuild,)* })
            }
            fn structure(&self, out: &mut ::std::string::String) {
                out.push_str(#type_name);
                out.push('{');
                #(#structure)*
                out.push('}');
            }
        }
    })
}
