//! CLIP's byte-level BPE tokenizer, read from `vocab.json` + `merges.txt` or from
//! `tokenizer.json` (through the `tokenizers` library), with the pad token and maximum
//! length from `tokenizer_config.json` / `special_tokens_map.json`.
//! Behaves like transformers' (tokenizers-backed) `CLIPTokenizer`: whitespace collapsed,
//! lower-cased, split like CLIP's regex, bytes mapped to printable characters, words
//! merged by rank with `</w>` marking the end of a word.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::config::read_json;
use super::error::{EngineError, Result};

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: u32,
    pub max_length: usize,
    /// Special tokens matched whole in the raw text, longest first (the second SDXL
    /// tokenizer's pad token `!` is one, so `!` in a prompt becomes its id).
    specials: Vec<(String, u32)>,
    /// A folder's `tokenizer.json`, run by the `tokenizers` library itself (normaliser,
    /// pre-tokeniser, BPE and added tokens exactly as transformers runs them); None for
    /// `vocab.json` + `merges.txt`, which the code below tokenises.
    backend: Option<tokenizers::Tokenizer>,
}

/// GPT-2's reversible table from bytes to printable characters.
pub fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut extra = 0u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    table
}

type Ranks = HashMap<(String, String), usize>;

fn read_merges(merges_file: &Path) -> Result<Ranks> {
    let text = std::fs::read_to_string(merges_file).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::Missing {
                file: merges_file.to_path_buf(),
            }
        } else {
            EngineError::Io {
                file: merges_file.to_path_buf(),
                source,
            }
        }
    })?;
    let mut ranks = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => {
                let rank = ranks.len();
                ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
            }
            _ => {
                return Err(EngineError::field(
                    merges_file,
                    "merges",
                    format!("line {}: malformed `{line}`", n + 1),
                ))
            }
        }
    }
    Ok(ranks)
}

/// A token name given either as a string or as `{"content": ...}`.
fn token_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl ClipTokenizer {
    /// Reads `vocab.json` + `merges.txt` (what transformers 4 wrote) or, where they are
    /// absent, the BPE model inside `tokenizer.json` (all transformers 5 writes).
    pub fn load(dir: &Path) -> Result<Self> {
        let vocab_file = dir.join("vocab.json");
        let json_file = dir.join("tokenizer.json");
        let (vocab, ranks, backend, vocab_file) = if !vocab_file.is_file() && json_file.is_file() {
            let mut t =
                tokenizers::Tokenizer::from_file(&json_file).map_err(|e| EngineError::Json {
                    file: json_file.clone(),
                    message: e.to_string(),
                })?;
            // Padding and truncation are done here, to CLIP's rules (see encode_padded).
            t.with_padding(None);
            t.with_truncation(None)
                .map_err(|e| EngineError::field(&json_file, "truncation", e.to_string()))?;
            (t.get_vocab(true), HashMap::new(), Some(t), json_file)
        } else {
            let vocab: HashMap<String, u32> = read_json(&vocab_file)?;
            (
                vocab,
                read_merges(&dir.join("merges.txt"))?,
                None,
                vocab_file,
            )
        };
        let cfg_file = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_file.is_file() {
            read_json(&cfg_file)?
        } else {
            Value::Null
        };
        let map_file = dir.join("special_tokens_map.json");
        let map: Value = if map_file.is_file() {
            read_json(&map_file)?
        } else {
            Value::Null
        };
        let special = |key: &str, default: &str| {
            token_name(map.get(key))
                .or_else(|| token_name(cfg.get(key)))
                .unwrap_or_else(|| default.to_string())
        };
        let id_of = |name: String, field: &str| -> Result<u32> {
            vocab.get(&name).copied().ok_or_else(|| {
                EngineError::field(
                    &vocab_file,
                    field,
                    format!("token `{name}` is not in the vocabulary"),
                )
            })
        };
        let mut specials = Vec::new();
        for (key, default) in [
            ("bos_token", BOS),
            ("eos_token", EOS),
            ("pad_token", EOS),
            ("unk_token", EOS),
        ] {
            let name = special(key, default);
            let id = id_of(name.clone(), key)?;
            if !specials.iter().any(|(n, _)| *n == name) {
                specials.push((name, id));
            }
        }
        specials.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        let bos_id = id_of(special("bos_token", BOS), "bos_token")?;
        let eos_id = id_of(special("eos_token", EOS), "eos_token")?;
        let pad_id = id_of(special("pad_token", EOS), "pad_token")?;
        let max_length = match cfg.get("model_max_length") {
            None => 77,
            Some(v) => match v.as_u64() {
                Some(n) if (2..=1 << 20).contains(&n) => n as usize,
                // transformers writes a huge float for "unlimited"; CLIP's context is 77.
                _ if v.is_f64() => 77,
                _ => {
                    return Err(EngineError::field(
                        &cfg_file,
                        "model_max_length",
                        format!("expected an integer >= 2, got {v}"),
                    ))
                }
            },
        };
        Ok(Self {
            vocab,
            ranks,
            byte_chars: byte_chars(),
            bos_id,
            eos_id,
            pad_id,
            max_length,
            specials,
            backend,
        })
    }

    /// Normalisation and CLIP's pre-tokenisation regex, written out by hand:
    /// `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`.
    fn pieces(text: &str) -> Vec<String> {
        let normal: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let chars: Vec<char> = normal.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        let starts_with = |i: usize, s: &str| {
            let n = s.chars().count();
            i + n <= chars.len() && chars[i..i + n].iter().copied().eq(s.chars())
        };
        let other = |c: char| !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric();
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let special = [BOS, EOS].into_iter().find(|s| starts_with(i, s));
            let contraction = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
                .into_iter()
                .find(|s| starts_with(i, s));
            let len = if let Some(s) = special.or(contraction) {
                s.chars().count()
            } else if c.is_alphabetic() {
                chars[i..].iter().take_while(|c| c.is_alphabetic()).count()
            } else if c.is_numeric() {
                1
            } else {
                chars[i..].iter().take_while(|&&c| other(c)).count()
            };
            out.push(chars[i..i + len].iter().collect());
            i += len;
        }
        out
    }

    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(&id) = self.vocab.get(word).filter(|_| word == BOS || word == EOS) {
            out.push(id);
            return;
        }
        let mapped: Vec<char> = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
        let mut symbols: Vec<String> = mapped.iter().map(|c| c.to_string()).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", symbols[i], symbols[i + 1]);
            symbols.splice(i..i + 2, [merged]);
        }
        for s in symbols {
            // Like tokenizers' BPE with an unknown token set: unknown symbols become it.
            out.push(self.vocab.get(&s).copied().unwrap_or(self.eos_id));
        }
    }

    /// Token ids without the begin/end tokens.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(t) = &self.backend {
            let enc = t
                .encode(text, false)
                .map_err(|e| EngineError::Tokenizer(format!("`{text}`: {e}")))?;
            return Ok(enc.get_ids().to_vec());
        }
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = self
                .specials
                .iter()
                .filter_map(|(name, id)| rest.find(name.as_str()).map(|at| (at, name.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            let (plain, special) = match next {
                Some((at, len, id)) => (&rest[..at], Some((len, id, at))),
                None => (rest, None),
            };
            for piece in Self::pieces(plain) {
                self.bpe(&piece, &mut ids);
            }
            match special {
                Some((len, id, at)) => {
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => break,
            }
        }
        Ok(ids)
    }

    /// `padding="max_length", truncation=True` to `max_length` (`self.max_length` if None).
    pub fn encode_padded(&self, text: &str, max_length: Option<usize>) -> Result<Vec<u32>> {
        let n = max_length.unwrap_or(self.max_length).max(2);
        let mut ids = vec![self.bos_id];
        ids.extend(self.tokenize(text)?.into_iter().take(n - 2));
        ids.push(self.eos_id);
        ids.resize(n, self.pad_id);
        Ok(ids)
    }
}
