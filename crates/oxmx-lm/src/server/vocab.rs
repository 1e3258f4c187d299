//! The text each token id adds to a reply, computed once per server: what logprobs report and what
//! the JSON constraint checks candidate tokens against. A token's text is what the streaming
//! detokenizer appends after an ordinary token, so SentencePiece's leading-space handling and
//! byte-level decoding match the reply exactly.

use crate::tokenizer::Tokenizer;

pub struct Vocab {
    /// Per id: the UTF-8 bytes the token adds (lossy for a token that is part of a character).
    bytes: Vec<Vec<u8>>,
    /// Per id: usable as plain text (not special, a whole number of characters).
    plain: Vec<bool>,
}

impl Vocab {
    pub fn new(tok: &Tokenizer, size: usize) -> Vocab {
        // An ordinary first token takes the "start of text" treatment (SentencePiece trims the
        // first space) so that every measured token is in the middle of a reply.
        let anchor = tok.encode("a", false).ok().and_then(|v| v.first().copied());
        let mut bytes = Vec::with_capacity(size);
        let mut plain = Vec::with_capacity(size);
        for id in 0..size as u32 {
            let mut d = tok.detokenizer();
            if let Some(a) = anchor {
                d.add_token(a);
            }
            let base = d.text().len();
            d.add_token(id);
            d.finalize();
            let t = d.text().get(base..).unwrap_or("").to_string();
            plain.push(!tok.is_special(id) && !t.contains('\u{FFFD}') && tok.id_to_token(id).is_some());
            bytes.push(t.into_bytes());
        }
        Vocab { bytes, plain }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], |b| b.as_slice())
    }

    /// The token's text when it is plain text (see [`Vocab::plain`]).
    pub fn text(&self, id: u32) -> Option<&str> {
        if !*self.plain.get(id as usize)? {
            return None;
        }
        std::str::from_utf8(self.bytes(id)).ok()
    }
}
