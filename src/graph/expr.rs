//! Integer expressions over dimension names: `n_embd / n_head`, `n_kv_head * head_dim`.
//! Grammar: `expr = term (('+'|'-') term)*`, `term = atom (('*'|'/') atom)*`,
//! `atom = integer | name | '(' expr ')'`. Arithmetic is checked: `/` must divide exactly,
//! and overflow or a negative result is an error rather than a wrapped number.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Num(u64),
    Name(String),
    Bin(Box<Expr>, BinOp, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    Unbound(String),
    DivByZero { lhs: u64 },
    Inexact { lhs: u64, rhs: u64 },
    Overflow,
    Negative { lhs: u64, rhs: u64 },
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
        }
    }
}

impl Expr {
    /// Parses an expression, or says what is wrong at which character.
    pub fn parse(src: &str) -> Result<Expr, String> {
        let tokens = tokenize(src)?;
        let mut p = Parser { tokens, pos: 0 };
        let e = p.expr()?;
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
                Expr::Num(_) => {}
                Expr::Name(n) => out.push(n),
                Expr::Bin(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        walk(self, &mut out);
        out
    }

    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Result<u64, EvalError> {
        match self {
            Expr::Num(n) => Ok(*n),
            Expr::Name(n) => lookup(n).ok_or_else(|| EvalError::Unbound(n.clone())),
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval(lookup)?, b.eval(lookup)?);
                match op {
                    BinOp::Add => a.checked_add(b).ok_or(EvalError::Overflow),
                    BinOp::Sub => a
                        .checked_sub(b)
                        .ok_or(EvalError::Negative { lhs: a, rhs: b }),
                    BinOp::Mul => a.checked_mul(b).ok_or(EvalError::Overflow),
                    BinOp::Div if b == 0 => Err(EvalError::DivByZero { lhs: a }),
                    BinOp::Div if a % b != 0 => Err(EvalError::Inexact { lhs: a, rhs: b }),
                    BinOp::Div => Ok(a / b),
                }
            }
        }
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
        } else if "+-*/()".contains(c) {
            out.push(Token {
                text: c.to_string(),
                at,
            });
            i += 1;
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
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|t| t.text.as_str())
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
        if text == "(" {
            let e = self.expr()?;
            if self.peek() != Some(")") {
                return Err(format!("`(` at character {} is never closed", at + 1));
            }
            self.pos += 1;
            return Ok(e);
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            return text
                .parse()
                .map(Expr::Num)
                .map_err(|_| format!("integer `{text}` is too large"));
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
            Err(EvalError::DivByZero { lhs: 10 })
        );
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
}
