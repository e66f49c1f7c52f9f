//! Choosing the next token from logits: greedy, or temperature sampling narrowed by top-k,
//! top-p and min-p, after a repetition penalty — llama.cpp's default order (penalties,
//! top-k, top-p, min-p, temperature, draw). A seed makes runs reproducible. The sampler
//! keeps its candidate and history buffers between calls: nothing is allocated per token.

pub mod rng;

use rng::SplitMix64;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or less) picks the most likely token.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this
    /// (1: off), as llama.cpp's `--repeat-penalty`.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted from the logit of every recent token, once (OpenAI's presence penalty;
    /// 0: off), and per occurrence (frequency penalty), after the repeat penalty, as
    /// llama.cpp's penalties sampler does.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Added to a token's logit before anything else (OpenAI's `logit_bias`; −∞ bans it).
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0x5eed,
        }
    }
}

/// A sampling option outside the range where it means something.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{option} {value}: must be {range}")]
pub struct SamplerError {
    pub option: &'static str,
    pub value: f32,
    pub range: &'static str,
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every option's range (a temperature at or below 0 is valid: greedy).
    pub fn check(&self) -> Result<(), SamplerError> {
        let bad = |option, value, range| {
            Err(SamplerError {
                option,
                value,
                range,
            })
        };
        if !self.temperature.is_finite() {
            return bad(
                "temperature",
                self.temperature,
                "a finite number (≤ 0: greedy)",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p", self.top_p, "in (0, 1] (1: off)");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p", self.min_p, "in [0, 1] (0: off)");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat-penalty",
                self.repeat_penalty,
                "a positive number (1: off)",
            );
        }
        for (option, value) in [
            ("presence-penalty", self.presence_penalty),
            ("frequency-penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&value) {
                return bad(option, value, "in [-2, 2] (0: off)");
            }
        }
        if let Some(&(_, bias)) = self.logit_bias.iter().find(|b| b.1.is_nan()) {
            return bad("logit-bias", bias, "a number (-inf bans the token)");
        }
        Ok(())
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: SplitMix64,
    /// (logit, then probability; token id), one per vocabulary entry.
    candidates: Vec<(f32, u32)>,
    /// The last `repeat_last_n` tokens, a ring.
    recent: Vec<u32>,
    recent_at: usize,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig, n_vocab: usize) -> Sampler {
        Sampler {
            rng: SplitMix64(cfg.seed),
            candidates: Vec::with_capacity(n_vocab),
            recent: Vec::with_capacity(cfg.repeat_last_n),
            recent_at: 0,
            cfg,
        }
    }

    /// Records a token as part of the context (prompt or generated) for the penalty.
    pub fn accept(&mut self, token: u32) {
        let n = self.cfg.repeat_last_n;
        if n == 0 {
            return;
        }
        if self.recent.len() < n {
            self.recent.push(token);
        } else {
            self.recent[self.recent_at] = token;
            self.recent_at = (self.recent_at + 1) % n;
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let plain = self.cfg.logit_bias.is_empty()
            && self.cfg.repeat_penalty == 1.0
            && self.cfg.presence_penalty == 0.0
            && self.cfg.frequency_penalty == 0.0;
        if self.cfg.temperature <= 0.0 && plain {
            // Greedy on untouched logits: the first largest, read in place (a server samples
            // every request's row each step; copying 49k candidates would cost more).
            let mut best = 0;
            for (i, &l) in logits.iter().enumerate() {
                if l.total_cmp(&logits[best]).is_gt() {
                    best = i;
                }
            }
            return best as u32;
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        for &(t, bias) in &self.cfg.logit_bias {
            if let Some(c) = self.candidates.get_mut(t as usize) {
                c.0 += bias;
            }
        }
        let (p, presence, frequency) = (
            self.cfg.repeat_penalty,
            self.cfg.presence_penalty,
            self.cfg.frequency_penalty,
        );
        if p != 1.0 || presence != 0.0 || frequency != 0.0 {
            for (i, &t) in self.recent.iter().enumerate() {
                // Once per distinct token (its first entry in the ring), with its count.
                if self.recent[..i].contains(&t) {
                    continue;
                }
                let count = self.recent[i..].iter().filter(|&&r| r == t).count() as f32;
                if let Some(c) = self.candidates.get_mut(t as usize) {
                    c.0 = if c.0 > 0.0 { c.0 / p } else { c.0 * p };
                    c.0 -= count * frequency + presence;
                }
            }
        }
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.cfg.temperature <= 0.0 {
            // infallible: the vocabulary is not empty (a plan's logits have n_vocab ≥ 1 rows)
            return self
                .candidates
                .iter()
                .min_by(|a, b| by_logit(a, b))
                .map_or(0, |c| c.1);
        }
        let mut n = self.candidates.len();
        if self.cfg.top_k > 0 && self.cfg.top_k < n {
            self.candidates
                .select_nth_unstable_by(self.cfg.top_k - 1, by_logit);
            n = self.cfg.top_k;
        }
        let c = &mut self.candidates[..n];
        c.sort_unstable_by(by_logit);
        // top-p and min-p cut on the probabilities at temperature 1, as llama.cpp does;
        // the temperature then reshapes what is left.
        let max = c[0].0;
        if max == f32::NEG_INFINITY {
            // Every token banned by logit_bias: nothing to weigh, take the first.
            return c[0].1;
        }
        let total: f32 = c.iter().map(|x| (x.0 - max).exp()).sum();
        let mut cut = n;
        if self.cfg.top_p < 1.0 {
            let mut acc = 0f32;
            if let Some(i) = c.iter().position(|x| {
                acc += (x.0 - max).exp() / total;
                acc >= self.cfg.top_p
            }) {
                cut = i + 1;
            }
        }
        if self.cfg.min_p > 0.0 {
            // p / p_max = exp(logit - max) ≥ min_p
            let floor = self.cfg.min_p.ln();
            cut = c[..cut]
                .iter()
                .take_while(|x| x.0 - max >= floor)
                .count()
                .max(1);
        }
        let c = &mut c[..cut];
        let t = self.cfg.temperature;
        let mut sum = 0f32;
        for x in c.iter_mut() {
            x.0 = ((x.0 - max) / t).exp();
            sum += x.0;
        }
        let mut r = self.rng.next_unit() as f32 * sum;
        for x in c.iter() {
            r -= x.0;
            if r < 0.0 {
                return x.1;
            }
        }
        c[c.len() - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_named() {
        assert!(SamplerConfig::default().check().is_ok());
        let greedy = SamplerConfig {
            temperature: -1.0,
            ..Default::default()
        };
        assert!(greedy.check().is_ok(), "temperature ≤ 0 means greedy");
        for (cfg, option) in [
            (
                SamplerConfig {
                    top_p: 2.0,
                    ..Default::default()
                },
                "top-p",
            ),
            (
                SamplerConfig {
                    top_p: 0.0,
                    ..Default::default()
                },
                "top-p",
            ),
            (
                SamplerConfig {
                    min_p: -0.1,
                    ..Default::default()
                },
                "min-p",
            ),
            (
                SamplerConfig {
                    repeat_penalty: 0.0,
                    ..Default::default()
                },
                "repeat-penalty",
            ),
            (
                SamplerConfig {
                    temperature: f32::NAN,
                    ..Default::default()
                },
                "temperature",
            ),
        ] {
            let e = cfg.check().unwrap_err();
            assert_eq!(e.option, option);
            assert!(e.to_string().contains("must be"), "{e}");
        }
    }

    fn cfg(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty: 1.0,
            repeat_last_n: 8,
            seed: 7,
            ..SamplerConfig::default()
        }
    }

    #[test]
    fn greedy_picks_the_largest_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplerConfig::greedy(), 4);
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]), 1);
        // The in-place path and the candidates path agree (a penalty of 1 changes nothing
        // but the path).
        let mut c = SamplerConfig::greedy();
        c.frequency_penalty = 1e-30;
        let mut slow = Sampler::new(c, 6);
        let v = [-1.0, f32::NEG_INFINITY, 2.5, 2.5, 0.0, -0.0];
        assert_eq!(s.sample(&v), slow.sample(&v));
        assert_eq!(s.sample(&[0.0, -0.0]), slow.sample(&[0.0, -0.0]));
    }

    #[test]
    fn seeded_runs_repeat_and_follow_the_distribution() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let draw = |seed| {
            let mut s = Sampler::new(
                SamplerConfig {
                    seed,
                    ..cfg(1.0, 0, 1.0, 0.0)
                },
                4,
            );
            (0..4000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let counts = draw(3).iter().fold([0usize; 4], |mut c, &t| {
            c[t as usize] += 1;
            c
        });
        // softmax([0,1,2,3]) = [0.032, 0.087, 0.237, 0.644]
        for (c, p) in counts.iter().zip([0.032, 0.087, 0.237, 0.644]) {
            assert!((*c as f64 / 4000.0 - p).abs() < 0.03, "{counts:?}");
        }
    }

    #[test]
    fn top_k_top_p_min_p_cut_the_tail() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let seen = |c: SamplerConfig| {
            let mut s = Sampler::new(c, 4);
            let mut seen = [false; 4];
            for _ in 0..2000 {
                seen[s.sample(&logits) as usize] = true;
            }
            seen
        };
        assert_eq!(seen(cfg(1.0, 2, 1.0, 0.0)), [false, false, true, true]);
        // top-p 0.7: 0.644 alone is below 0.7, with 0.237 it reaches it.
        assert_eq!(seen(cfg(1.0, 0, 0.7, 0.0)), [false, false, true, true]);
        // min-p 0.2: 0.237/0.644 = 0.37 stays, 0.087/0.644 = 0.14 goes.
        assert_eq!(seen(cfg(1.0, 0, 1.0, 0.2)), [false, false, true, true]);
    }

    #[test]
    fn repetition_penalty_discourages_recent_tokens() {
        let mut c = SamplerConfig::greedy();
        c.repeat_penalty = 2.0;
        let mut s = Sampler::new(c, 3);
        assert_eq!(s.sample(&[1.0, 1.5, -1.0]), 1);
        s.accept(1);
        assert_eq!(s.sample(&[1.0, 1.5, -1.0]), 0, "1.5 / 2 < 1.0");
        // Twice in the window is still divided once.
        s.accept(1);
        assert_eq!(s.sample(&[0.7, 1.5, -1.0]), 1, "1.5 / 2 > 0.7");
    }

    #[test]
    fn presence_and_frequency_penalties_and_logit_bias() {
        let logits = [1.0f32, 1.5, -1.0];
        let mut c = SamplerConfig::greedy();
        c.presence_penalty = 0.4;
        let mut s = Sampler::new(c.clone(), 3);
        s.accept(1);
        s.accept(1);
        assert_eq!(
            s.sample(&logits),
            1,
            "1.5 - 0.4 > 1.0: presence counts once"
        );
        c.presence_penalty = 0.0;
        c.frequency_penalty = 0.4;
        let mut s = Sampler::new(c.clone(), 3);
        s.accept(1);
        s.accept(1);
        assert_eq!(
            s.sample(&logits),
            0,
            "1.5 - 2·0.4 < 1.0: frequency counts each"
        );
        c.frequency_penalty = 0.0;
        c.logit_bias = vec![(2, 3.0), (1, f32::NEG_INFINITY), (99, 5.0)];
        let mut s = Sampler::new(c.clone(), 3);
        assert_eq!(s.sample(&logits), 2, "-1 + 3 wins, 1 banned, 99 ignored");
        c.presence_penalty = 2.5;
        assert_eq!(c.check().unwrap_err().option, "presence-penalty");
        c.presence_penalty = 0.0;
        c.logit_bias = vec![(0, f32::NAN)];
        assert_eq!(c.check().unwrap_err().option, "logit-bias");
    }
}
