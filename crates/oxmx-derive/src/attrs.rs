//! Field attributes shared by both derives.

use syn::{Data, DeriveInput, Field, Fields, Ident, LitStr, Type};

pub struct FieldInfo<'a> {
    pub field: &'a Field,
    /// `self.<access>`: the field identifier or tuple index.
    pub access: proc_macro2::TokenStream,
    /// The path segment naming this field.
    pub name: String,
    pub skip: bool,
    /// A non-trainable array kept with the parameters (running statistics): never trainable.
    pub buffer: bool,
    /// The field's type is `ModuleState`.
    pub is_state: bool,
}

/// The fields of a struct with their attributes; enums and unions are rejected with a clear error.
pub fn struct_fields(input: &DeriveInput) -> syn::Result<Vec<FieldInfo<'_>>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(&input.ident, "oxmx derives support structs only"));
    };
    let fields: Vec<&Field> = match &data.fields {
        Fields::Named(f) => f.named.iter().collect(),
        Fields::Unnamed(f) => f.unnamed.iter().collect(),
        Fields::Unit => Vec::new(),
    };
    fields
        .into_iter()
        .enumerate()
        .map(|(i, field)| {
            let (access, mut name) = match &field.ident {
                Some(id) => (quote::quote!(#id), unraw(id)),
                None => {
                    let idx = syn::Index::from(i);
                    (quote::quote!(#idx), i.to_string())
                }
            };
            let mut skip = false;
            let mut buffer = false;
            for attr in &field.attrs {
                if !(attr.path().is_ident("module") || attr.path().is_ident("tree")) {
                    continue;
                }
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("skip") {
                        skip = true;
                        Ok(())
                    } else if meta.path.is_ident("buffer") {
                        buffer = true;
                        Ok(())
                    } else if meta.path.is_ident("rename") {
                        let lit: LitStr = meta.value()?.parse()?;
                        name = lit.value();
                        Ok(())
                    } else {
                        Err(meta.error("unknown attribute: expected `skip`, `buffer` or `rename = \"...\"`"))
                    }
                })?;
            }
            let is_state = type_is(&field.ty, "ModuleState");
            Ok(FieldInfo { field, access, name, skip, buffer, is_state })
        })
        .collect()
}

fn unraw(id: &Ident) -> String {
    let s = id.to_string();
    s.strip_prefix("r#").map(str::to_string).unwrap_or(s)
}

fn type_is(ty: &Type, last: &str) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == last))
}
