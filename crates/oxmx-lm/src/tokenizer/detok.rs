//! Streaming detokenization: text comes out token by token while generating, and a piece never
//! ends inside a UTF-8 sequence (an emoji split over three byte tokens comes out whole, once).
//!
//! As mlx-lm's three detokenizers, picked from the `tokenizer.json` decoder:
//! * byte-level BPE: each token's characters map back to bytes through GPT-2's table;
//! * SentencePiece: `▁` is a space, `<0xNN>` tokens are raw bytes, the first leading space is
//!   stripped when the decoder strips it;
//! * anything else: re-decode the tokens since the last newline and emit what grew (quadratic per
//!   line, but exact for any decoder).
//!
//! Linear kinds accumulate bytes and emit the longest prefix that is complete UTF-8; what is left
//! at [`StreamingDetokenizer::finalize`] is emitted lossily, as a full decode would.

use serde_json::Value;

use super::gguf::bytes_to_unicode;
use super::Tokenizer;

/// How tokens turn back into bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum DetokenizerKind {
    ByteLevel,
    SentencePiece { trim_first_space: bool },
    Naive,
}

impl DetokenizerKind {
    /// The kind a `tokenizer.json`'s `decoder` calls for.
    pub fn from_tokenizer_json(tj: &Value) -> DetokenizerKind {
        let dec = &tj["decoder"];
        let ty = dec["type"].as_str().unwrap_or("");
        if ty == "ByteLevel" {
            return DetokenizerKind::ByteLevel;
        }
        if ty == "Metaspace" {
            let trim = dec["prepend_scheme"].as_str().map(|s| s != "never").unwrap_or(true);
            return DetokenizerKind::SentencePiece { trim_first_space: trim };
        }
        if ty == "Sequence" {
            let parts: Vec<&Value> = dec["decoders"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            let has = |t: &str| parts.iter().any(|p| p["type"] == t);
            if has("ByteLevel") && parts.len() == 1 {
                return DetokenizerKind::ByteLevel;
            }
            let replaces_space =
                parts.iter().any(|p| p["type"] == "Replace" && p["pattern"]["String"] == "\u{2581}" && p["content"] == " ");
            let only_known = parts.iter().all(|p| matches!(p["type"].as_str(), Some("Replace" | "ByteFallback" | "Fuse" | "Strip")));
            if replaces_space && has("ByteFallback") && only_known {
                let trim = parts.iter().any(|p| p["type"] == "Strip" && p["start"].as_u64() == Some(1));
                return DetokenizerKind::SentencePiece { trim_first_space: trim };
            }
        }
        DetokenizerKind::Naive
    }
}

/// Incremental detokenizer; see the module doc.
pub struct StreamingDetokenizer<'a> {
    tok: &'a Tokenizer,
    kind: DetokenizerKind,
    char_to_byte: std::collections::HashMap<char, u8>,
    tokens: Vec<u32>,
    /// Bytes not yet emitted (an incomplete UTF-8 tail).
    pending: Vec<u8>,
    /// Naive kind: tokens since the last committed newline and the text emitted from them.
    line_start: usize,
    line_emitted: usize,
    first: bool,
    text: String,
    segment_start: usize,
}

/// The complete-UTF-8 prefix of `buf` as text (invalid bytes inside become U+FFFD), leaving an
/// incomplete trailing sequence in `buf`.
fn take_complete(buf: &mut Vec<u8>, out: &mut String) {
    let mut start = 0;
    loop {
        match std::str::from_utf8(&buf[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = buf.len();
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&buf[start..start + good]).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        start += good + n;
                    }
                    None => {
                        start += good;
                        break;
                    }
                }
            }
        }
    }
    buf.drain(..start);
}

impl<'a> StreamingDetokenizer<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        let kind = tok.detokenizer_kind().clone();
        let char_to_byte = if kind == DetokenizerKind::ByteLevel {
            bytes_to_unicode().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect()
        } else {
            Default::default()
        };
        StreamingDetokenizer {
            tok,
            kind,
            char_to_byte,
            tokens: Vec::new(),
            pending: Vec::new(),
            line_start: 0,
            line_emitted: 0,
            first: true,
            text: String::new(),
            segment_start: 0,
        }
    }

    /// Starts over.
    pub fn reset(&mut self) {
        *self = StreamingDetokenizer::new(self.tok);
    }

    /// The bytes one token stands for (linear kinds).
    fn token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let Some(piece) = self.tok.id_to_token(id) else { return };
        match self.kind {
            DetokenizerKind::ByteLevel => {
                // A token with a character outside GPT-2's table (an added token like
                // "<|im_end|>" written plainly) stands for its own UTF-8, as the HF decoder treats it.
                let mapped: Option<Vec<u8>> = piece.chars().map(|c| self.char_to_byte.get(&c).copied()).collect();
                match mapped {
                    Some(b) => out.extend(b),
                    None => out.extend(piece.as_bytes()),
                }
            }
            DetokenizerKind::SentencePiece { .. } => {
                let b = piece.as_bytes();
                if b.len() == 6 && piece.starts_with("<0x") && piece.ends_with('>') {
                    if let Ok(v) = u8::from_str_radix(&piece[3..5], 16) {
                        out.push(v);
                        return;
                    }
                }
                out.extend(piece.replace('\u{2581}', " ").as_bytes());
            }
            DetokenizerKind::Naive => {}
        }
    }

    /// Feeds one token id.
    pub fn add_token(&mut self, id: u32) {
        self.tokens.push(id);
        match self.kind {
            DetokenizerKind::Naive => {
                let line = &self.tokens[self.line_start..];
                let Ok(t) = self.tok.decode(line, false) else { return };
                if t.ends_with('\u{FFFD}') {
                    return; // an incomplete character: wait for the rest
                }
                if t.len() > self.line_emitted && t.is_char_boundary(self.line_emitted) {
                    self.text.push_str(&t[self.line_emitted..]);
                    self.line_emitted = t.len();
                }
                if t.ends_with('\n') {
                    self.line_start = self.tokens.len();
                    self.line_emitted = 0;
                }
            }
            _ => {
                let mut bytes = std::mem::take(&mut self.pending);
                self.token_bytes(id, &mut bytes);
                if self.first && !bytes.is_empty() {
                    if let DetokenizerKind::SentencePiece { trim_first_space: true } = self.kind {
                        if bytes[0] == b' ' {
                            bytes.remove(0);
                        }
                    }
                    self.first = false;
                }
                take_complete(&mut bytes, &mut self.text);
                self.pending = bytes;
            }
        }
    }

    /// Emits whatever is held back (lossily, as a full decode does).
    pub fn finalize(&mut self) {
        match self.kind {
            DetokenizerKind::Naive => {
                let line = &self.tokens[self.line_start..];
                if let Ok(t) = self.tok.decode(line, false) {
                    if t.len() > self.line_emitted && t.is_char_boundary(self.line_emitted) {
                        self.text.push_str(&t[self.line_emitted..]);
                    }
                }
                self.line_start = self.tokens.len();
                self.line_emitted = 0;
            }
            _ => {
                let rest = std::mem::take(&mut self.pending);
                self.text.push_str(&String::from_utf8_lossy(&rest));
            }
        }
    }

    /// The text emitted since the last call.
    pub fn last_segment(&mut self) -> &str {
        let s = &self.text[self.segment_start..];
        self.segment_start = self.text.len();
        s
    }

    /// All text emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}
