//! The fine-tuning arguments with mlx-lm's names and defaults (`CONFIG_DEFAULTS` in
//! `mlx_lm/lora.py`). `adapter_config.json` is these arguments as JSON, as mlx-lm writes it; a
//! YAML `-c` config uses the same keys. Reading an adapter back needs only `fine_tune_type`,
//! `num_layers` and `lora_parameters` ([`AdapterConfig`]), so files written by either tool load.

use oxmx_core::{Error, Result};
use oxmx_optim::schedule::{cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay};
use oxmx_optim::{LearningRate, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// `lora_parameters`: rank, dropout and scale of every adapter, and optionally the module paths
/// (relative to a block, e.g. `self_attn.q_proj`, or top-level such as `lm_head`) that get one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraParameters {
    pub rank: usize,
    #[serde(default)]
    pub dropout: f64,
    /// mlx-lm requires it (and refuses `alpha`, which other tools use instead).
    pub scale: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

impl Default for LoraParameters {
    fn default() -> Self {
        LoraParameters { rank: 8, dropout: 0.0, scale: 20.0, keys: None }
    }
}

/// `lr_schedule`: one of MLX's schedules by name with its positional `arguments` (the first is
/// the initial learning rate), optionally after a linear warm-up from `warmup_init`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub name: String,
    pub arguments: Vec<f64>,
    #[serde(default)]
    pub warmup: u64,
    #[serde(default)]
    pub warmup_init: f64,
}

impl LrSchedule {
    /// mlx-lm's `build_schedule`: `join_schedules([linear_schedule(warmup_init, init, warmup),
    /// schedule], [warmup + 1])` when there is a warm-up.
    pub fn build(&self) -> Result<LearningRate> {
        let a = &self.arguments;
        let arg = |i: usize| {
            a.get(i)
                .copied()
                .ok_or_else(|| Error::invalid(format!("[lr_schedule] `{}` needs at least {} arguments, got {}", self.name, i + 1, a.len())))
        };
        let init = arg(0)? as f32;
        let main: Schedule = match self.name.as_str() {
            "cosine_decay" => cosine_decay(init, arg(1)? as u64, a.get(2).copied().unwrap_or(0.0) as f32)?,
            "exponential_decay" => exponential_decay(init, arg(1)? as f32),
            "step_decay" => step_decay(init, arg(1)? as f32, arg(2)? as u64)?,
            "linear_schedule" => linear_schedule(init, arg(1)? as f32, arg(2)? as u64)?,
            other => {
                return Err(Error::invalid(format!(
                    "[lr_schedule] unknown schedule `{other}`; choose cosine_decay, exponential_decay, step_decay or linear_schedule"
                )))
            }
        };
        if self.warmup == 0 {
            return Ok(LearningRate::Scheduled(main));
        }
        let warm = linear_schedule(self.warmup_init as f32, init, self.warmup)?;
        Ok(LearningRate::Scheduled(join_schedules(vec![warm, main], vec![self.warmup + 1])?))
    }
}

/// All arguments of a run, as mlx-lm resolves them (CLI over YAML over these defaults). Unknown
/// keys (mlx-lm's reporting options, HF dataset settings) are kept and written back unchanged.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainArgs {
    pub model: String,
    pub train: bool,
    pub data: String,
    pub fine_tune_type: String,
    pub optimizer: String,
    pub optimizer_config: Value,
    pub mask_prompt: bool,
    /// The last `num_layers` blocks; -1 (or 0, as mlx-lm slices) means all.
    pub num_layers: i64,
    pub batch_size: usize,
    pub iters: usize,
    /// -1: the whole validation set.
    pub val_batches: i64,
    pub learning_rate: f64,
    pub steps_per_report: usize,
    pub steps_per_eval: usize,
    pub resume_adapter_file: Option<String>,
    pub adapter_path: String,
    pub save_every: usize,
    pub test: bool,
    pub test_batches: i64,
    pub max_seq_length: usize,
    pub config: Option<String>,
    pub grad_checkpoint: bool,
    pub grad_accumulation_steps: usize,
    pub lr_schedule: Option<LrSchedule>,
    /// `None` for a full fine-tune (mlx-lm writes `null` then).
    pub lora_parameters: Option<LoraParameters>,
    pub seed: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for TrainArgs {
    fn default() -> Self {
        TrainArgs {
            model: String::new(),
            train: false,
            data: "data".into(),
            fine_tune_type: "lora".into(),
            optimizer: "adam".into(),
            optimizer_config: serde_json::json!({"adam": {}, "adamw": {}, "sgd": {}}),
            mask_prompt: false,
            num_layers: 16,
            batch_size: 4,
            iters: 1000,
            val_batches: 25,
            learning_rate: 1e-5,
            steps_per_report: 10,
            steps_per_eval: 200,
            resume_adapter_file: None,
            adapter_path: "adapters".into(),
            save_every: 100,
            test: false,
            test_batches: 500,
            max_seq_length: 2048,
            config: None,
            grad_checkpoint: false,
            grad_accumulation_steps: 1,
            lr_schedule: None,
            lora_parameters: Some(LoraParameters::default()),
            seed: 0,
            extra: Map::new(),
        }
    }
}

impl TrainArgs {
    /// The defaults with `overrides` (a JSON object of argument names, e.g. a parsed YAML file
    /// and then the command line) laid over them in order; a later layer wins. A key of the
    /// wrong type is an error naming it.
    pub fn resolve(layers: &[Map<String, Value>]) -> Result<TrainArgs> {
        let Value::Object(mut merged) = serde_json::to_value(TrainArgs::default()).map_err(|e| Error::invalid(e.to_string()))? else {
            return Err(Error::invalid("[lora] the defaults are not an object"));
        };
        for layer in layers {
            for (k, v) in layer {
                // `lora_parameters` merges key by key so a config may set only the rank.
                match (merged.get_mut(k), v) {
                    (Some(Value::Object(old)), Value::Object(new)) if k == "lora_parameters" => {
                        old.extend(new.clone());
                    }
                    _ => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let args: TrainArgs = match serde_json::from_value(Value::Object(merged.clone())) {
            Ok(a) => a,
            Err(e) => {
                // serde names the type but not the key: find the key whose value fails alone.
                let defaults = serde_json::to_value(TrainArgs::default()).unwrap_or(Value::Null);
                let culprit = merged.iter().find(|(k, v)| {
                    let mut probe = defaults.clone();
                    probe[k.as_str()] = (*v).clone();
                    serde_json::from_value::<TrainArgs>(probe).is_err()
                });
                let key = culprit.map_or(String::new(), |(k, _)| format!(" `{k}`"));
                return Err(Error::invalid(format!("[lora] invalid configuration{key}: {e}")));
            }
        };
        args.validate()?;
        Ok(args)
    }

    /// The checks mlx-lm makes before training, with messages that name the argument.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("[lora] {m}")));
        if !["lora", "dora", "full"].contains(&self.fine_tune_type.as_str()) {
            return bad(format!("unknown fine_tune_type `{}`; choose lora, dora or full", self.fine_tune_type));
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if self.grad_accumulation_steps == 0 {
            return bad("grad_accumulation_steps must be at least 1".into());
        }
        if self.steps_per_report == 0 || self.steps_per_eval == 0 || self.save_every == 0 {
            return bad("steps_per_report, steps_per_eval and save_every must be at least 1".into());
        }
        if self.max_seq_length < 2 {
            return bad(format!("max_seq_length must be at least 2, got {}", self.max_seq_length));
        }
        if self.fine_tune_type != "full" && self.lora_parameters.is_none() {
            return bad("lora_parameters is required for lora and dora".into());
        }
        if !self.learning_rate.is_finite() {
            return bad(format!("learning_rate must be finite, got {}", self.learning_rate));
        }
        Ok(())
    }

    /// The learning rate: the schedule when one is configured, else the constant.
    pub fn learning_rate(&self) -> Result<LearningRate> {
        match &self.lr_schedule {
            Some(s) => s.build(),
            None => Ok(LearningRate::Constant(self.learning_rate as f32)),
        }
    }

    /// Writes `adapter_config.json` (all arguments, 4-space indented as mlx-lm's `save_config`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut v = serde_json::to_value(self).map_err(|e| Error::invalid(e.to_string()))?;
        if self.fine_tune_type == "full" {
            // mlx-lm drops the LoRA settings of a full fine-tune.
            v["lora_parameters"] = Value::Null;
        }
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        v.serialize(&mut ser).map_err(|e| Error::invalid(e.to_string()))?;
        std::fs::write(path, buf).map_err(|e| Error::io(format!("[lora] cannot write {}: {e}", path.display())))
    }
}

/// What loading an adapter needs from `adapter_config.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AdapterConfig {
    #[serde(default = "default_fine_tune_type")]
    pub fine_tune_type: String,
    pub num_layers: i64,
    #[serde(default)]
    pub lora_parameters: Option<LoraParameters>,
}

fn default_fine_tune_type() -> String {
    "lora".into()
}

impl AdapterConfig {
    /// Reads `<dir>/adapter_config.json`.
    pub fn load(dir: &Path) -> Result<AdapterConfig> {
        let path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("[adapters] cannot read {}: {e}", path.display())))?;
        let c: AdapterConfig = serde_json::from_str(&text).map_err(|e| Error::invalid(format!("[adapters] {}: {e}", path.display())))?;
        match c.fine_tune_type.as_str() {
            "full" => Ok(c),
            "lora" | "dora" if c.lora_parameters.is_some() => Ok(c),
            "lora" | "dora" => Err(Error::invalid(format!("[adapters] {}: `lora_parameters` is missing", path.display()))),
            other => Err(Error::invalid(format!("[adapters] {}: unknown fine_tune_type `{other}`", path.display()))),
        }
    }
}
