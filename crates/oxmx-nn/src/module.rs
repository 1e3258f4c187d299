//! `Module`: a tree of parameters named by path. Derive it (`#[derive(Module)]`); the required
//! methods are the visitors the derive writes, everything else is provided here.

use crate::state::ModuleState;
use oxmx_core::{Array, Error, Result};
use std::collections::BTreeMap;

/// Parameters (or gradients, or optimizer state) flattened to dotted paths: the checkpoint keys.
pub type Params = BTreeMap<String, Array>;

pub trait Module {
    fn type_name(&self) -> &'static str;
    /// Parameters held by this module itself (not by a child module), with full paths.
    fn visit_local_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Array));
    fn visit_local_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Array));
    /// The direct child modules, with full paths.
    fn visit_children<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a dyn Module));
    fn visit_children_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut dyn Module));
    fn state(&self) -> Option<&ModuleState>;
    fn state_mut(&mut self) -> Option<&mut ModuleState>;
    /// Fields marked `#[module(buffer)]`: arrays saved with the parameters that are never
    /// trainable (their paths relative to this module, or below them).
    fn buffer_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Every parameter, depth first in field order.
    fn visit_params<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Array)) {
        self.visit_local_params(prefix, f);
        self.visit_children(prefix, &mut |p, m| m.visit_params(p, f));
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Array)) {
        self.visit_local_params_mut(prefix, f);
        self.visit_children_mut(prefix, &mut |p, m| m.visit_params_mut(p, f));
    }

    /// All parameters by path (MLX's `parameters()` flattened).
    fn parameters(&self) -> Params {
        let mut out = Params::new();
        self.visit_params("", &mut |p, a| {
            out.insert(p.to_string(), a.clone());
        });
        out
    }

    /// Parameters not frozen.
    fn trainable_parameters(&self) -> Params {
        let mut out = Params::new();
        collect_trainable(self.as_dyn(), "", &mut out);
        out
    }

    fn num_parameters(&self) -> usize {
        let mut n = 0;
        self.visit_params("", &mut |_, a| n += a.size());
        n
    }

    /// This module (path "") and every module below it, depth first.
    fn named_modules(&self) -> Vec<(String, &dyn Module)> {
        let mut out = Vec::new();
        walk_modules(self.as_dyn(), "", &mut out);
        out
    }

    /// Calls `f` on this module and every module below it (parents before children).
    fn apply_to_modules(&mut self, f: &mut dyn FnMut(&str, &mut dyn Module)) {
        apply_modules(self.as_dyn_mut(), "", f)
    }

    /// Replaces the parameters named in `params`. Unknown keys and shape mismatches are errors
    /// naming the key, and on error nothing is changed.
    fn update(&mut self, params: &Params) -> Result<()> {
        let own = self.parameters();
        for (k, v) in params {
            match own.get(k) {
                None => return Err(Error::invalid(format!("[update] `{}` has no parameter `{k}`", self.type_name()))),
                Some(old) if old.shape() != v.shape() => {
                    return Err(Error::invalid(format!(
                        "[update] parameter `{k}` has shape {:?}, the new value {:?}",
                        old.shape(),
                        v.shape()
                    )))
                }
                _ => {}
            }
        }
        self.visit_params_mut("", &mut |p, a| {
            if let Some(v) = params.get(p) {
                *a = v.clone();
            }
        });
        Ok(())
    }

    /// Whether this module is in training mode (modules without state follow their default, true).
    fn training(&self) -> bool {
        self.state().map_or(true, |s| s.training)
    }

    /// Sets training mode on this module and every module below it.
    fn train(&mut self, mode: bool) {
        self.apply_to_modules(&mut |_, m| {
            if let Some(s) = m.state_mut() {
                s.training = mode;
            }
        })
    }

    /// `train(false)`.
    fn set_eval(&mut self) {
        self.train(false)
    }

    /// Freezes every parameter at or below this module.
    fn freeze(&mut self) -> Result<()> {
        set_frozen(self.as_dyn_mut(), &[""], true)
    }

    fn unfreeze(&mut self) -> Result<()> {
        set_frozen(self.as_dyn_mut(), &[""], false)
    }

    /// Freezes the parameters named by `paths`: a parameter path (`layers.0.weight`) or a module
    /// path (`layers.0`, every parameter below it). A path that names nothing is an error.
    fn freeze_paths(&mut self, paths: &[&str]) -> Result<()> {
        set_frozen(self.as_dyn_mut(), paths, true)
    }

    fn unfreeze_paths(&mut self, paths: &[&str]) -> Result<()> {
        set_frozen(self.as_dyn_mut(), paths, false)
    }

    /// The quantization hook of layers that can be quantized in place (`Linear`, `Embedding`;
    /// set by `#[module(quantizable)]`); `None` for every other module.
    fn quantizable(&mut self) -> Option<&mut dyn crate::Quantizable> {
        None
    }

    #[doc(hidden)]
    fn as_dyn(&self) -> &dyn Module;
    #[doc(hidden)]
    fn as_dyn_mut(&mut self) -> &mut dyn Module;
}

fn walk_modules<'a>(m: &'a dyn Module, path: &str, out: &mut Vec<(String, &'a dyn Module)>) {
    out.push((path.to_string(), m));
    m.visit_children(path, &mut |p, c| walk_modules(c, p, out));
}

fn apply_modules(m: &mut dyn Module, path: &str, f: &mut dyn FnMut(&str, &mut dyn Module)) {
    f(path, m);
    m.visit_children_mut(path, &mut |p, c| apply_modules(c, p, f));
}

fn collect_trainable(m: &dyn Module, path: &str, out: &mut Params) {
    let frozen = m.state().map(|s| &s.frozen);
    m.visit_local_params(path, &mut |p, a| {
        let local = relative(path, p);
        let buffer = m.buffer_names().iter().any(|b| under(local, b));
        if !buffer && !frozen.is_some_and(|f| f.contains(local)) {
            out.insert(p.to_string(), a.clone());
        }
    });
    m.visit_children(path, &mut |p, c| collect_trainable(c, p, out));
}

/// `full` relative to the module at `base` (both are dotted paths from the same root).
fn relative<'a>(base: &str, full: &'a str) -> &'a str {
    if base.is_empty() {
        full
    } else {
        full.strip_prefix(base).and_then(|r| r.strip_prefix('.')).unwrap_or(full)
    }
}

/// `path` equals `target` or lies below it (`target` empty matches everything).
fn under(path: &str, target: &str) -> bool {
    target.is_empty() || path == target || path.strip_prefix(target).is_some_and(|r| r.starts_with('.'))
}

fn set_frozen(root: &mut dyn Module, targets: &[&str], freeze: bool) -> Result<()> {
    // Check first so an error leaves the module unchanged.
    let mut matched = vec![false; targets.len()];
    let mut stateless: Option<(String, &'static str)> = None;
    for (path, m) in root.named_modules() {
        let mut hit = false;
        m.visit_local_params(&path, &mut |p, _| {
            for (i, t) in targets.iter().enumerate() {
                if under(p, t) {
                    matched[i] = true;
                    hit = true;
                }
            }
        });
        if hit && m.state().is_none() && stateless.is_none() {
            stateless = Some((path.clone(), m.type_name()));
        }
    }
    if let Some((i, _)) = matched.iter().enumerate().find(|(_, m)| !**m) {
        return Err(Error::invalid(format!("[freeze] no parameter at or below `{}`", targets[i])));
    }
    if let Some((path, ty)) = stateless {
        return Err(Error::invalid(format!(
            "[freeze] module `{ty}` at `{path}` holds parameters but has no `ModuleState` field to record frozen ones"
        )));
    }
    root.apply_to_modules(&mut |path, m| {
        let mut local = Vec::new();
        m.visit_local_params(path, &mut |p, _| {
            if targets.iter().any(|t| under(p, t)) {
                local.push(relative(path, p).to_string());
            }
        });
        if let Some(s) = m.state_mut() {
            for name in local {
                if freeze {
                    s.frozen.insert(name);
                } else {
                    s.frozen.remove(&name);
                }
            }
        }
    });
    Ok(())
}
