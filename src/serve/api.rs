//! The request bodies the endpoints take, parsed strictly where a value is given and
//! leniently about fields they do not know (clients send many), with every error naming
//! the field: `messages[1].role: unknown role "robot"`.

use serde::Deserialize;

use super::error::ApiError;
use crate::sample::SamplerConfig;
use crate::tokenizer::chat::Message;

/// Tokens a request may ask for at most; past the context it stops with "length" anyway.
const MAX_TOKENS_LIMIT: u64 = 1 << 20;
/// Stop strings per request, and bytes per stop string.
const MAX_STOPS: usize = 16;
const MAX_STOP_BYTES: usize = 256;

/// Every field of the chat, completion and llama-server completion bodies.
#[derive(Deserialize, Default)]
pub struct Body {
    pub model: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub prompt: Option<Prompt>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    /// llama-server's: −1 for "until the context is full".
    pub n_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    /// Negative: a random seed (llama-server's −1).
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<u32>,
    pub logit_bias: Option<LogitBias>,
    pub ignore_eos: Option<bool>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
}

#[derive(Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

#[derive(Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// OpenAI's `{"1234": -100}`, or llama-server's `[[1234, -100], [42, false]]` (false bans).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum LogitBias {
    Map(std::collections::BTreeMap<String, f32>),
    Pairs(Vec<(u32, BiasValue)>),
}

#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub enum BiasValue {
    Number(f32),
    Allowed(bool),
}

/// What a request asks the engine for, checked.
#[derive(Debug, Clone)]
pub struct Generation {
    pub sampler: SamplerConfig,
    /// Tokens to generate at most (the context may end it sooner).
    pub max_tokens: usize,
    pub stops: Vec<String>,
    pub ignore_eos: bool,
}

/// Parses a body: malformed JSON, a wrong type or a bad value is a 400 naming the field.
pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("the body: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

impl Body {
    /// The sampling and length options; `default_max` when the request gives none.
    pub fn generation(&self, default_max: usize, n_vocab: usize) -> Result<Generation, ApiError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::bad_request(format!(
                "n: {n} choices asked; this server makes one (n = 1)"
            )));
        }
        let mut max_tokens = default_max;
        for (field, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if let Some(v) = v {
                if v == 0 || v > MAX_TOKENS_LIMIT {
                    return Err(ApiError::bad_request(format!(
                        "{field}: {v} must be between 1 and {MAX_TOKENS_LIMIT}"
                    )));
                }
                max_tokens = v as usize;
            }
        }
        match self.n_predict {
            Some(n) if n < -1 || n == 0 || n > MAX_TOKENS_LIMIT as i64 => {
                return Err(ApiError::bad_request(format!(
                    "n_predict: {n} must be -1 (until the context is full) or between 1 and \
                     {MAX_TOKENS_LIMIT}"
                )))
            }
            Some(-1) => max_tokens = MAX_TOKENS_LIMIT as usize,
            Some(n) => max_tokens = n as usize,
            None => {}
        }
        let d = SamplerConfig::default();
        let seed = match self.seed {
            Some(s) if s >= 0 => s as u64,
            _ => random_seed(),
        };
        let logit_bias = match &self.logit_bias {
            None => Vec::new(),
            Some(LogitBias::Map(m)) => m
                .iter()
                .map(|(k, &v)| {
                    let id = k.parse::<u32>().map_err(|_| {
                        ApiError::bad_request(format!("logit_bias: key {k:?} is not a token id"))
                    })?;
                    Ok((id, v))
                })
                .collect::<Result<_, ApiError>>()?,
            Some(LogitBias::Pairs(p)) => p
                .iter()
                .map(|&(id, v)| match v {
                    BiasValue::Number(b) => (id, b),
                    BiasValue::Allowed(true) => (id, 0.0),
                    BiasValue::Allowed(false) => (id, f32::NEG_INFINITY),
                })
                .collect(),
        };
        if let Some(&(id, _)) = logit_bias.iter().find(|b| b.0 as usize >= n_vocab) {
            return Err(ApiError::bad_request(format!(
                "logit_bias: token {id} is out of range: the vocabulary has {n_vocab} tokens"
            )));
        }
        let sampler = SamplerConfig {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.map_or(d.top_k, |k| k as usize),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            repeat_last_n: self.repeat_last_n.map_or(d.repeat_last_n, |n| n as usize),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias,
            seed,
        };
        if sampler.repeat_last_n > 4096 {
            return Err(ApiError::bad_request(format!(
                "repeat_last_n: {} must be at most 4096",
                sampler.repeat_last_n
            )));
        }
        if !(0.0..=2.0).contains(&sampler.temperature) {
            return Err(ApiError::bad_request(format!(
                "temperature: {} must be between 0 and 2",
                sampler.temperature
            )));
        }
        sampler.check().map_err(|e| {
            ApiError::bad_request(format!(
                "{}: {} must be {}",
                e.option.replace('-', "_"),
                e.value,
                e.range
            ))
        })?;
        let stops = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stops.len() > MAX_STOPS || stops.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::bad_request(format!(
                "stop: at most {MAX_STOPS} strings of at most {MAX_STOP_BYTES} bytes"
            )));
        }
        Ok(Generation {
            sampler,
            max_tokens,
            stops,
            ignore_eos: self.ignore_eos.unwrap_or(false),
        })
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The conversation, for the chat template: roles checked, text parts joined.
    pub fn conversation(&self) -> Result<Vec<Message>, ApiError> {
        let Some(messages) = &self.messages else {
            return Err(ApiError::bad_request("messages: missing"));
        };
        if messages.is_empty() {
            return Err(ApiError::bad_request("messages: empty"));
        }
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = match m.role.as_str() {
                    "system" | "developer" => "system",
                    "user" => "user",
                    "assistant" => "assistant",
                    "tool" => "tool",
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "messages[{i}].role: unknown role {other:?} (system, developer, \
                             user, assistant or tool)"
                        )))
                    }
                };
                let content = match &m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut text = String::new();
                        for (j, p) in parts.iter().enumerate() {
                            match (p.kind.as_str(), &p.text) {
                                ("text", Some(t)) => text.push_str(t),
                                (kind, _) => {
                                    return Err(ApiError::bad_request(format!(
                                        "messages[{i}].content[{j}]: a {kind:?} part; this \
                                         model reads text parts only"
                                    )))
                                }
                            }
                        }
                        text
                    }
                };
                Ok(Message {
                    role: role.into(),
                    content,
                })
            })
            .collect()
    }
}

/// A seed for requests that give none (or a negative one): the clock's nanoseconds mixed.
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    crate::rng::SplitMix64(t).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        let body = parse(json.as_bytes());
        let e = match body {
            Err(e) => e,
            Ok(b) => b
                .generation(16, 1000)
                .and_then(|_| b.conversation())
                .unwrap_err(),
        };
        assert_eq!(e.status, 400);
        e.message
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err("").contains("JSON object"));
        assert!(err(r#"{"max_tokens": -1}"#).starts_with("max_tokens:"));
        assert!(err(r#"{"max_tokens": "many"}"#).starts_with("max_tokens:"));
        assert!(err(r#"{"max_tokens": 99999999999}"#).starts_with("max_tokens:"));
        assert!(err(r#"{"messages": [{"role": "robot", "content": "hi"}]}"#)
            .starts_with("messages[0].role: unknown role \"robot\""));
        assert!(err(r#"{"messages": [{"role": 3}]}"#).starts_with("messages[0].role:"));
        assert!(err(r#"{"messages": []}"#).starts_with("messages: empty"));
        assert!(err(r#"{"temperature": 9}"#).starts_with("temperature:"));
        assert!(err(r#"{"top_p": 0}"#).starts_with("top_p:"));
        assert!(err(r#"{"presence_penalty": 3}"#).starts_with("presence_penalty:"));
        assert!(err(r#"{"n": 2}"#).starts_with("n:"));
        assert!(err(r#"{"logit_bias": {"x": 1}}"#).starts_with("logit_bias:"));
        assert!(err(r#"{"logit_bias": {"5000": 1}}"#).contains("out of range"));
        assert!(err(r#"{"n_predict": -2}"#).starts_with("n_predict:"));
    }

    /// Any bytes, and any object over the known fields with values of any JSON type: an
    /// answer or a 400, never a panic.
    #[test]
    fn hostile_bodies_get_an_answer() {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("role|content|type|text|[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        let fields = "model|messages|prompt|max_tokens|max_completion_tokens|n_predict|\
                      temperature|top_p|top_k|min_p|seed|stop|presence_penalty|\
                      frequency_penalty|repeat_penalty|repeat_last_n|logit_bias|ignore_eos|\
                      stream|stream_options|n";
        proptest!(|(body in prop::collection::btree_map(fields, value, 0..6),
                    bytes in prop::collection::vec(any::<u8>(), 0..64))| {
            let json = serde_json::Value::Object(body.into_iter().collect()).to_string();
            for input in [json.as_bytes(), &bytes[..]] {
                match parse(input) {
                    Err(e) => prop_assert_eq!(e.status, 400),
                    Ok(b) => {
                        if let Err(e) = b.generation(16, 1000) {
                            prop_assert_eq!(e.status, 400);
                        }
                        if let Err(e) = b.conversation() {
                            prop_assert_eq!(e.status, 400);
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn good_bodies_map_to_options() {
        let b = parse(
            br#"{"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"},
                {"type": "text", "text": "b"}]}, {"role": "user", "content": "hi"}],
                "max_completion_tokens": 5, "stop": "x", "seed": 3, "temperature": 0,
                "logit_bias": [[7, false], [8, 1.5]], "unknown_field": {"any": 1}}"#,
        )
        .unwrap();
        let g = b.generation(16, 1000).unwrap();
        assert_eq!(g.max_tokens, 5);
        assert_eq!(g.stops, vec!["x".to_string()]);
        assert_eq!(g.sampler.seed, 3);
        assert_eq!(g.sampler.logit_bias, vec![(7, f32::NEG_INFINITY), (8, 1.5)]);
        let c = b.conversation().unwrap();
        assert_eq!(
            (c[0].role.as_str(), c[0].content.as_str()),
            ("system", "ab")
        );
        let b = parse(br#"{"prompt": [1, 2], "n_predict": -1}"#).unwrap();
        assert_eq!(b.generation(16, 1000).unwrap().max_tokens, 1 << 20);
        assert!(matches!(b.prompt, Some(Prompt::Tokens(_))));
    }
}
