//! Tokenizers: Hugging Face `tokenizer.json` folders and GGUF vocabularies, both run by the
//! `tokenizers` crate (so encode/decode follow Hugging Face exactly), plus the special-token facts
//! generation needs (BOS/EOS ids, add_bos), the chat template source and a streaming detokenizer.
//!
//! mlx-lm re-implements no tokenization either: it wraps transformers' `AutoTokenizer`. The GGUF
//! path rebuilds the same `tokenizer.json` transformers' GGUF converter builds (gguf.rs says how).

mod detok;
mod gguf;

pub use detok::{DetokenizerKind, StreamingDetokenizer};

use std::path::Path;
use std::str::FromStr;

use oxmx_core::io::gguf::GgufFile;
use oxmx_core::{Error, Result};
use serde_json::Value;

use crate::chat::{ChatTemplate, ChatTemplateSource};

/// A tokenizer with its special tokens and chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it was loaded from, for error messages.
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    unk_token: Option<String>,
    pad_token: Option<String>,
    eos_token_ids: Vec<u32>,
    pad_token_id: Option<u32>,
    detok_kind: DetokenizerKind,
    chat_template: Option<ChatTemplateSource>,
}

fn err(source: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("[tokenizer] {source}: {msg}"))
}

fn read_json(path: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(format!("[tokenizer] cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&s).map_err(|e| Error::invalid(format!("[tokenizer] {} is not valid JSON: {e}", path.display())))
}

/// The text of a special-token entry of tokenizer_config.json: a string or an AddedToken object.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads a Hugging Face / mlx-community model folder: `tokenizer.json`, optionally
    /// `tokenizer_config.json` (special tokens, `chat_template`), `chat_template.jinja` /
    /// `chat_template.json`, and `generation_config.json` / `config.json` for the EOS ids.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Tokenizer> {
        let dir = dir.as_ref();
        let tj = dir.join("tokenizer.json");
        if !tj.is_file() {
            return Err(Error::io(format!("[tokenizer] no tokenizer.json in {} (only fast tokenizers are supported)", dir.display())));
        }
        let source = tj.display().to_string();
        let json = std::fs::read_to_string(&tj).map_err(|e| Error::io(format!("[tokenizer] cannot read {source}: {e}")))?;
        let inner = tokenizers::Tokenizer::from_str(&json).map_err(|e| err(&source, format!("cannot parse: {e}")))?;
        let tj_value: Value = serde_json::from_str(&json).map_err(|e| err(&source, e))?;
        let detok_kind = DetokenizerKind::from_tokenizer_json(&tj_value);

        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() { Some(read_json(&cfg_path)?) } else { None };
        let get = |k: &str| cfg.as_ref().and_then(|c| c.get(k));
        let bos_token = token_text(get("bos_token"));
        let eos_token = token_text(get("eos_token"));
        let pad_token = token_text(get("pad_token"));

        // Template precedence as transformers: a sidecar chat_template.jinja, then chat_template.json,
        // then the tokenizer_config.json entry (a string, or a list of {name, template}).
        let jinja = dir.join("chat_template.jinja");
        let ctjson = dir.join("chat_template.json");
        let chat_template = if jinja.is_file() {
            let s = std::fs::read_to_string(&jinja).map_err(|e| Error::io(format!("[tokenizer] cannot read {}: {e}", jinja.display())))?;
            Some(ChatTemplateSource::single(s, jinja.display().to_string()))
        } else if ctjson.is_file() {
            let v = read_json(&ctjson)?;
            ChatTemplateSource::from_json(v.get("chat_template").unwrap_or(&v), &ctjson.display().to_string())?
        } else if let Some(v) = get("chat_template") {
            ChatTemplateSource::from_json(v, &format!("{} chat_template", cfg_path.display()))?
        } else {
            None
        };

        let mut t = Tokenizer {
            inner,
            source,
            bos_token,
            eos_token,
            unk_token: token_text(get("unk_token")),
            pad_token: pad_token.clone(),
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            detok_kind,
            chat_template,
        };
        t.pad_token_id = pad_token.as_deref().and_then(|p| t.token_to_id(p));
        // EOS ids as mlx-lm: the model config's eos_token_id (generation_config.json overrides
        // config.json), falling back to the tokenizer's eos_token.
        let mut eos = Vec::new();
        for f in ["generation_config.json", "config.json"] {
            let p = dir.join(f);
            if p.is_file() {
                if let Ok(v) = read_json(&p) {
                    match v.get("eos_token_id") {
                        Some(Value::Number(n)) => eos.extend(n.as_u64().map(|x| x as u32)),
                        Some(Value::Array(a)) => eos.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32)),
                        _ => {}
                    }
                }
                if !eos.is_empty() {
                    break;
                }
            }
        }
        if eos.is_empty() {
            eos.extend(t.eos_token.as_deref().and_then(|e| t.token_to_id(e)));
        }
        t.eos_token_ids = eos;
        Ok(t)
    }

    /// Rebuilds the tokenizer a GGUF file describes in its `tokenizer.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        Self::from_gguf_metadata(&file.metadata, &file.path.display().to_string())
    }

    /// As [`Tokenizer::from_gguf`], from the metadata alone; `source` names it in errors.
    pub fn from_gguf_metadata(meta: &oxmx_core::io::gguf::GgufMetadata, source: &str) -> Result<Tokenizer> {
        let b = gguf::build(meta, source)?;
        let inner = tokenizers::Tokenizer::from_str(&b.json.to_string())
            .map_err(|e| err(source, format!("cannot build the tokenizer from GGUF metadata: {e}")))?;
        let detok_kind = DetokenizerKind::from_tokenizer_json(&b.json);
        Ok(Tokenizer {
            inner,
            source: source.to_string(),
            bos_token: b.bos_token,
            eos_token: b.eos_token,
            unk_token: b.unk_token,
            pad_token: b.pad_token,
            eos_token_ids: b.eos_id.into_iter().collect(),
            pad_token_id: b.pad_id,
            detok_kind,
            chat_template: b.chat_template.map(|s| ChatTemplateSource::single(s, format!("{source} tokenizer.chat_template"))),
        })
    }

    /// Loads from a model path: a GGUF file or a folder with `tokenizer.json`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        if path.is_dir() {
            Self::from_dir(path)
        } else if path.is_file() {
            let f = GgufFile::open(path)?;
            Self::from_gguf(&f)
        } else {
            Err(Error::io(format!("[tokenizer] no such file or folder: {}", path.display())))
        }
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor (BOS for
    /// models that add one), as Hugging Face's `encode(text, add_special_tokens=...)`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| err(&self.source, format!("encode failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, as Hugging Face's `decode(ids, skip_special_tokens=...)`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let n = self.vocab_size() as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= n) {
            return Err(err(&self.source, format!("token id {bad} is outside the vocabulary of {n}")));
        }
        self.inner.decode(ids, skip_special_tokens).map_err(|e| err(&self.source, format!("decode failed: {e}")))
    }

    /// The number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_to_id(t))
    }
    /// Ids that end generation (a set as mlx-lm's `eos_token_ids`).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }
    /// Adds an id to the EOS set (mlx-lm's `--extra-eos-token`).
    pub fn add_eos_token_id(&mut self, id: u32) {
        if !self.eos_token_ids.contains(&id) {
            self.eos_token_ids.push(id);
        }
    }
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token_id
    }
    /// Whether `id` is an added special token (control tokens such as `<|im_end|>`).
    pub fn is_special(&self, id: u32) -> bool {
        self.inner.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special)
    }
    /// The `tokenizers` tokenizer itself.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The decoder shape the streaming detokenizer follows.
    pub fn detokenizer_kind(&self) -> &DetokenizerKind {
        &self.detok_kind
    }
    /// A fresh streaming detokenizer.
    pub fn detokenizer(&self) -> StreamingDetokenizer<'_> {
        StreamingDetokenizer::new(self)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }
    /// The raw chat template source(s), if the model has one.
    pub fn chat_template_source(&self) -> Option<&ChatTemplateSource> {
        self.chat_template.as_ref()
    }
    /// Replaces the chat template (`--chat-template` style overrides).
    pub fn set_chat_template(&mut self, src: Option<ChatTemplateSource>) {
        self.chat_template = src;
    }
    /// Compiles the default (or `name`d) chat template with this tokenizer's bos/eos tokens.
    pub fn chat_template(&self, name: Option<&str>) -> Result<ChatTemplate> {
        let src =
            self.chat_template.as_ref().ok_or_else(|| err(&self.source, "the model has no chat template (use --ignore-chat-template)"))?;
        let (text, origin) = src.select(name)?;
        let mut specials = Vec::new();
        for (k, v) in
            [("bos_token", &self.bos_token), ("eos_token", &self.eos_token), ("unk_token", &self.unk_token), ("pad_token", &self.pad_token)]
        {
            if let Some(v) = v {
                specials.push((k.to_string(), v.clone()));
            }
        }
        ChatTemplate::new(text, origin, specials)
    }
}
