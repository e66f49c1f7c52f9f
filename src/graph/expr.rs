//! Expressions over dimension and parameter names: `n_embd / n_head`, `n_kv_head * head_dim`,
//! and per-layer choices such as `if(layer % 6 == 5, rope_global, rope_local)`.
//!
//! Grammar: `cond = sum (('=='|'!='|'<'|'<='|'>'|'>=') sum)?`,
//! `sum = term (('+'|'-') term)*`, `term = atom (('*'|'/'|'%') atom)*`,
//! `atom = number | name | 'if' '(' cond ',' cond ',' cond ')' | 'sqrt' '(' cond ')'
//! | '(' cond ')'` (`sqrt` in float expressions only: Gemma scales its embedding by
//! `sqrt(n_embd)`).
//! A comparison is 1 or 0; `if` evaluates only the branch it takes. Integer evaluation
//! (dimensions, head counts) is checked: `/` must divide exactly, and overflow, a negative
//! result or a decimal number is an error rather than a wrapped or rounded one. Float
//! evaluation (eps, theta) reads parameters too and only refuses division by zero.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(u64),
    /// A number written with a decimal point (`10000.0`): float expressions only.
    Float(f64),
    Name(String),
    Bin(Box<Expr>, BinOp, Box<Expr>),
    /// `if(cond, then, else)`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `sqrt(x)`.
    Sqrt(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    Unbound(String),
    DivByZero { lhs: String },
    Inexact { lhs: u64, rhs: u64 },
    Overflow,
    Negative { lhs: u64, rhs: u64 },
    NotInteger(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Unbound(n) => write!(f, "`{n}` is not bound"),
            EvalError::DivByZero { lhs } => write!(f, "division by zero ({lhs} / 0)"),
            EvalError::Inexact { lhs, rhs } => write!(
                f,
                "{lhs} / {rhs} does not divide evenly (remainder {})",
                lhs % rhs
            ),
            EvalError::Overflow => f.write_str("the result overflows u64"),
            EvalError::Negative { lhs, rhs } => write!(f, "{lhs} - {rhs} is negative"),
            EvalError::NotInteger(n) => write!(f, "{n} is not an integer"),
        }
    }
}

impl Expr {
    /// Parses an expression, or says what is wrong at which character.
    pub fn parse(src: &str) -> Result<Expr, String> {
        let tokens = tokenize(src)?;
        if tokens.len() > MAX_TOKENS {
            return Err(format!(
                "expression of {} tokens: at most {MAX_TOKENS}",
                tokens.len()
            ));
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
        };
        let e = p.cond()?;
        match p.tokens.get(p.pos) {
            None => Ok(e),
            Some(t) => Err(format!("unexpected `{}` at character {}", t.text, t.at + 1)),
        }
    }

    /// Names the expression reads, in order of appearance.
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Num(_) | Expr::Float(_) => {}
                Expr::Name(n) => out.push(n),
                Expr::Bin(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::If(c, a, b) => {
                    walk(c, out);
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Sqrt(a) => walk(a, out),
            }
        }
        walk(self, &mut out);
        out
    }

    /// The value as a checked unsigned integer.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Result<u64, EvalError> {
        match self {
            Expr::Num(n) => Ok(*n),
            Expr::Float(v) => Err(EvalError::NotInteger(v.to_string())),
            Expr::Sqrt(a) => Err(EvalError::NotInteger(format!("sqrt({})", a.eval(lookup)?))),
            Expr::Name(n) => lookup(n).ok_or_else(|| EvalError::Unbound(n.clone())),
            Expr::If(c, a, b) => {
                if c.eval(lookup)? != 0 {
                    a.eval(lookup)
                } else {
                    b.eval(lookup)
                }
            }
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval(lookup)?, b.eval(lookup)?);
                match op {
                    BinOp::Add => a.checked_add(b).ok_or(EvalError::Overflow),
                    BinOp::Sub => a
                        .checked_sub(b)
                        .ok_or(EvalError::Negative { lhs: a, rhs: b }),
                    BinOp::Mul => a.checked_mul(b).ok_or(EvalError::Overflow),
                    BinOp::Div | BinOp::Rem if b == 0 => {
                        Err(EvalError::DivByZero { lhs: a.to_string() })
                    }
                    BinOp::Div if a % b != 0 => Err(EvalError::Inexact { lhs: a, rhs: b }),
                    BinOp::Div => Ok(a / b),
                    BinOp::Rem => Ok(a % b),
                    cmp => Ok(compare(*cmp, a.cmp(&b)) as u64),
                }
            }
        }
    }

    /// The value as a float (f64 arithmetic).
    pub fn eval_f64(&self, lookup: &dyn Fn(&str) -> Option<f64>) -> Result<f64, EvalError> {
        match self {
            Expr::Num(n) => Ok(*n as f64),
            Expr::Float(v) => Ok(*v),
            Expr::Sqrt(a) => Ok(a.eval_f64(lookup)?.sqrt()),
            Expr::Name(n) => lookup(n).ok_or_else(|| EvalError::Unbound(n.clone())),
            Expr::If(c, a, b) => {
                if c.eval_f64(lookup)? != 0.0 {
                    a.eval_f64(lookup)
                } else {
                    b.eval_f64(lookup)
                }
            }
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval_f64(lookup)?, b.eval_f64(lookup)?);
                match op {
                    BinOp::Add => Ok(a + b),
                    BinOp::Sub => Ok(a - b),
                    BinOp::Mul => Ok(a * b),
                    BinOp::Div | BinOp::Rem if b == 0.0 => {
                        Err(EvalError::DivByZero { lhs: a.to_string() })
                    }
                    BinOp::Div => Ok(a / b),
                    BinOp::Rem => Ok(a % b),
                    cmp => Ok(a.partial_cmp(&b).is_some_and(|o| compare(*cmp, o)) as u8 as f64),
                }
            }
        }
    }
}

/// Whether `order` (lhs against rhs) satisfies comparison `op`.
fn compare(op: BinOp, order: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        BinOp::Eq => order == Equal,
        BinOp::Ne => order != Equal,
        BinOp::Lt => order == Less,
        BinOp::Le => order != Greater,
        BinOp::Gt => order == Greater,
        BinOp::Ge => order != Less,
        _ => false,
    }
}

struct Token {
    text: String,
    at: usize,
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if "=!<>".contains(c) {
            // `==`, `!=`, `<`, `<=`, `>`, `>=`
            let two = chars.get(i + 1).is_some_and(|&(_, n)| n == '=');
            let text = if two { format!("{c}=") } else { c.to_string() };
            if text == "=" || text == "!" {
                return Err(format!(
                    "unexpected `{c}` at character {} (comparisons: == != < <= > >=)",
                    at + 1
                ));
            }
            i += text.len();
            out.push(Token { text, at });
        } else if "+-*/%(),".contains(c) {
            out.push(Token {
                text: c.to_string(),
                at,
            });
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].1.is_ascii_digit()
                    || (chars[i].1 == '.'
                        && chars.get(i + 1).is_some_and(|&(_, d)| d.is_ascii_digit())))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().map(|&(_, c)| c).collect();
            out.push(Token { text, at });
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].1.is_ascii_alphanumeric() || chars[i].1 == '_') {
                i += 1;
            }
            let text: String = chars[start..i].iter().map(|&(_, c)| c).collect();
            out.push(Token { text, at });
        } else {
            return Err(format!(
                "unexpected character `{c}` at character {}",
                at + 1
            ));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Open parentheses (and calls) around the current position.
    depth: usize,
}

/// Deepest nesting of parentheses and calls an expression may have: the parser and the
/// evaluators recurse once per level, and a graph file is untrusted input.
const MAX_DEPTH: usize = 64;
/// Longest expression, in tokens: evaluation (and dropping the tree) recurses along a chain
/// of operators, so its length is bounded too.
const MAX_TOKENS: usize = 512;

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|t| t.text.as_str())
    }

    fn cond(&mut self) -> Result<Expr, String> {
        let e = self.expr()?;
        let op = match self.peek() {
            Some("==") => BinOp::Eq,
            Some("!=") => BinOp::Ne,
            Some("<") => BinOp::Lt,
            Some("<=") => BinOp::Le,
            Some(">") => BinOp::Gt,
            Some(">=") => BinOp::Ge,
            _ => return Ok(e),
        };
        self.pos += 1;
        Ok(Expr::Bin(Box::new(e), op, Box::new(self.expr()?)))
    }

    /// Expects `text` next.
    fn want(&mut self, text: &str, what: &str) -> Result<(), String> {
        match self.tokens.get(self.pos) {
            Some(t) if t.text == text => {
                self.pos += 1;
                Ok(())
            }
            Some(t) => Err(format!(
                "expected `{text}` {what}, found `{}` at character {}",
                t.text,
                t.at + 1
            )),
            None => Err(format!("expression ends early: expected `{text}` {what}")),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        while let Some(op) = match self.peek() {
            Some("+") => Some(BinOp::Add),
            Some("-") => Some(BinOp::Sub),
            _ => None,
        } {
            self.pos += 1;
            e = Expr::Bin(Box::new(e), op, Box::new(self.term()?));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while let Some(op) = match self.peek() {
            Some("*") => Some(BinOp::Mul),
            Some("/") => Some(BinOp::Div),
            Some("%") => Some(BinOp::Rem),
            _ => None,
        } {
            self.pos += 1;
            e = Expr::Bin(Box::new(e), op, Box::new(self.atom()?));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let Some(t) = self.tokens.get(self.pos) else {
            return Err("expression ends early".into());
        };
        self.pos += 1;
        let text = t.text.clone();
        let at = t.at;
        if text == "(" || self.peek() == Some("(") {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!(
                    "nesting deeper than {MAX_DEPTH} levels at character {}",
                    at + 1
                ));
            }
            let e = self.nested(&text, at);
            self.depth -= 1;
            return e;
        }
        self.plain(text, at)
    }

    /// A parenthesized expression or a call (`text` is `(` or the function's name).
    fn nested(&mut self, text: &str, at: usize) -> Result<Expr, String> {
        if text == "(" {
            let e = self.cond()?;
            if self.peek() != Some(")") {
                return Err(format!("`(` at character {} is never closed", at + 1));
            }
            self.pos += 1;
            return Ok(e);
        }
        if text == "if" && self.peek() == Some("(") {
            self.pos += 1;
            let c = self.cond()?;
            self.want(",", "after the condition of `if`")?;
            let a = self.cond()?;
            self.want(",", "after the first branch of `if`")?;
            let b = self.cond()?;
            self.want(")", "closing `if(`")?;
            return Ok(Expr::If(Box::new(c), Box::new(a), Box::new(b)));
        }
        if text == "sqrt" && self.peek() == Some("(") {
            self.pos += 1;
            let a = self.cond()?;
            self.want(")", "closing `sqrt(`")?;
            return Ok(Expr::Sqrt(Box::new(a)));
        }
        Err(format!(
            "unknown function `{text}` at character {} (functions: if, sqrt)",
            at + 1
        ))
    }

    /// A number or a name.
    fn plain(&mut self, text: String, at: usize) -> Result<Expr, String> {
        if text.chars().all(|c| c.is_ascii_digit()) {
            return text
                .parse()
                .map(Expr::Num)
                .map_err(|_| format!("integer `{text}` is too large"));
        }
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            return text
                .parse()
                .map(Expr::Float)
                .map_err(|_| format!("number `{text}` at character {} is malformed", at + 1));
        }
        if text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Ok(Expr::Name(text));
        }
        Err(format!("unexpected `{text}` at character {}", at + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, vars: &[(&str, u64)]) -> Result<u64, EvalError> {
        Expr::parse(src)
            .unwrap()
            .eval(&|n| vars.iter().find(|(k, _)| *k == n).map(|&(_, v)| v))
    }

    #[test]
    fn precedence_and_parentheses() {
        assert_eq!(eval("2 + 3 * 4", &[]), Ok(14));
        assert_eq!(eval("(2 + 3) * 4", &[]), Ok(20));
        assert_eq!(
            eval("n_embd / n_head", &[("n_embd", 576), ("n_head", 9)]),
            Ok(64)
        );
        assert_eq!(eval("10 - 4 - 3", &[]), Ok(3));
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(
            eval("a / b", &[("a", 10), ("b", 0)]),
            Err(EvalError::DivByZero { lhs: "10".into() })
        );
        assert_eq!(
            eval("a % b", &[("a", 10), ("b", 0)]),
            Err(EvalError::DivByZero { lhs: "10".into() })
        );
        assert_eq!(eval("2.5", &[]), Err(EvalError::NotInteger("2.5".into())));
        assert_eq!(
            eval("10 / 3", &[]),
            Err(EvalError::Inexact { lhs: 10, rhs: 3 })
        );
        assert_eq!(
            eval("3 - 4", &[]),
            Err(EvalError::Negative { lhs: 3, rhs: 4 })
        );
        assert_eq!(
            eval("18446744073709551615 + 1", &[]),
            Err(EvalError::Overflow)
        );
        assert_eq!(eval("x", &[]), Err(EvalError::Unbound("x".into())));
    }

    #[test]
    fn syntax_errors_say_where() {
        assert!(Expr::parse("a +").unwrap_err().contains("ends early"));
        assert!(Expr::parse("(a").unwrap_err().contains("never closed"));
        assert!(Expr::parse("a $ b").unwrap_err().contains("character 3"));
        assert!(Expr::parse("a b")
            .unwrap_err()
            .contains("`b` at character 3"));
    }

    fn eval_f(src: &str, vars: &[(&str, f64)]) -> Result<f64, EvalError> {
        Expr::parse(src)
            .unwrap()
            .eval_f64(&|n| vars.iter().find(|(k, _)| *k == n).map(|&(_, v)| v))
    }

    #[test]
    fn per_layer_choices() {
        // Gemma 3's pattern: every sixth layer global, the others local.
        let theta = "if(layer % 6 == 5, rope_global, rope_local)";
        let at = |layer: f64| {
            eval_f(
                theta,
                &[("layer", layer), ("rope_global", 1e6), ("rope_local", 1e4)],
            )
        };
        assert_eq!(at(5.0), Ok(1e6));
        assert_eq!(at(11.0), Ok(1e6));
        assert_eq!(at(0.0), Ok(1e4));
        assert_eq!(at(6.0), Ok(1e4));
        let window = "if((layer + 1) % 6 != 0, 512, 0)";
        assert_eq!(eval(window, &[("layer", 4)]), Ok(512));
        assert_eq!(eval(window, &[("layer", 5)]), Ok(0));
        // Comparisons are 1 or 0, bind looser than arithmetic; `if` takes one branch only.
        assert_eq!(eval("2 + 1 >= 3", &[]), Ok(1));
        assert_eq!(eval("4 < 2 * 2", &[]), Ok(0));
        assert_eq!(eval("if(1, 7, 1 / 0)", &[]), Ok(7));
        assert_eq!(eval_f("10000.0 * 2 / 4", &[]), Ok(5000.0));
        assert_eq!(
            eval_f("sqrt(n_embd)", &[("n_embd", 640.0)]),
            Ok(640f64.sqrt())
        );
        assert_eq!(
            eval("sqrt(16)", &[]),
            Err(EvalError::NotInteger("sqrt(16)".into()))
        );
        assert_eq!(
            eval_f("x / 0", &[("x", 1.5)]),
            Err(EvalError::DivByZero { lhs: "1.5".into() })
        );
    }

    #[test]
    fn hostile_expressions_are_errors_not_stack_overflows() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(Expr::parse(&deep).unwrap_err().contains("at most"));
        let deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        assert!(Expr::parse(&deep)
            .unwrap_err()
            .contains("nesting deeper than 64"));
        let nested_ifs = format!("{}1{}", "if(1, ".repeat(65), ", 0)".repeat(65));
        assert!(Expr::parse(&nested_ifs).unwrap_err().contains("nesting"));
        let long = vec!["1"; 100_000].join(" + ");
        assert!(Expr::parse(&long).unwrap_err().contains("at most 512"));
        assert_eq!(eval(&vec!["1"; 200].join(" + "), &[]), Ok(200));
        assert!(Expr::parse("max(1, 2)")
            .unwrap_err()
            .contains("unknown function `max`"));
    }

    #[test]
    fn bad_per_layer_syntax_says_where() {
        assert!(Expr::parse("if(a, b)")
            .unwrap_err()
            .contains("after the first branch"));
        assert!(Expr::parse("if(a b, c)")
            .unwrap_err()
            .contains("character 6"));
        assert!(Expr::parse("a = b").unwrap_err().contains("comparisons"));
        assert!(Expr::parse("a !").unwrap_err().contains("character 3"));
    }
}
