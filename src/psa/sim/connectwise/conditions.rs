//! The ConnectWise `conditions` language: a tokenizer and a recursive-descent parser that
//! refuse what the real service refuses (with the position of the mistake), checked against a
//! resource's schema, and the evaluation of a parsed condition against a record's API JSON
//! (string comparisons case-insensitive, as the service's SQL collation makes them).

use std::cmp::Ordering;

use serde_json::Value;

use super::dates::parse_instant;
use super::fields::{Res, Schema, Ty, field, get_path};

/// Parentheses deeper than this in `conditions` are refused.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    NotLike,
    Contains,
    NotContains,
    In,
    NotIn,
}

impl Op {
    pub(super) fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "like",
            Op::NotLike => "not like",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
            Op::In => "in",
            Op::NotIn => "not in",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    LParen,
    RParen,
    Comma,
    Op(Op),
    Str(String),
    Num(f64, String),
    Date(jiff::Timestamp, String),
    Word(String),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Op(op) => format!("'{}'", op.text()),
            Tok::Str(s) => format!("the string \"{s}\""),
            Tok::Num(_, t) => format!("the number {t}"),
            Tok::Date(_, t) => format!("the datetime [{t}]"),
            Tok::Word(w) => format!("'{w}'"),
        }
    }
}

/// A value in `conditions`, after checking it against its field's type. Strings are
/// lower-cased (comparisons are case-insensitive).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Date(jiff::Timestamp),
    Null,
}

/// A parsed `conditions` expression.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Cmp {
        field: &'static str,
        op: Op,
        values: Vec<Lit>,
    },
}

const KEYWORDS: [&str; 9] = [
    "and", "or", "not", "like", "contains", "in", "true", "false", "null",
];

fn is_keyword(w: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// Splits `conditions` into tokens, each with its character position.
pub(super) fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' => {
                i += 1;
                Tok::Op(Op::Eq)
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::Op(Op::Ne)
            }
            '!' => return Err(format!("'!' at position {at} must be followed by '='")),
            '<' | '>' => {
                let or_equal = next == Some('=');
                i += if or_equal { 2 } else { 1 };
                Tok::Op(match (c, or_equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' | '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "the string starting at position {at} is not closed"
                            ));
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(&escaped) => {
                                s.push(escaped);
                                i += 2;
                            }
                            None => {
                                return Err(format!(
                                    "the string starting at position {at} is not closed"
                                ));
                            }
                        },
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '[' => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == ']') else {
                    return Err(format!(
                        "the datetime starting at position {at} has no closing ']'"
                    ));
                };
                let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                let Some(t) = parse_instant(&inner) else {
                    return Err(format!(
                        "[{inner}] at position {at} is not a datetime (write [2026-08-20T18:04:26Z])"
                    ));
                };
                i += len + 2;
                Tok::Date(t, inner.trim().to_string())
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(char::is_ascii_digit) {
                    j += 1;
                }
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j += 1;
                    while chars.get(j).is_some_and(char::is_ascii_digit) {
                        j += 1;
                    }
                }
                if chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    return Err(format!(
                        "unexpected '{}' in the number at position {at}",
                        chars[j]
                    ));
                }
                let text: String = chars[i..j].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| format!("{text} at position {at} is not a number"))?;
                i = j;
                Tok::Num(n, text)
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.'))
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                i = j;
                Tok::Word(word)
            }
            other => return Err(format!("unexpected character '{other}' at position {at}")),
        };
        out.push((at, tok));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    schema: Schema,
    resource: &'static str,
    depth: usize,
}

/// Parses `conditions` for a resource: `None` for an empty expression.
pub(super) fn parse_conditions(text: &str, res: Res) -> Result<Option<Cond>, String> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        schema: res.schema(),
        resource: res.name(),
        depth: 0,
    };
    let cond = p.or()?;
    if let Some((at, t)) = p.toks.get(p.pos) {
        return Err(format!(
            "unexpected {} at position {at} (expected 'and', 'or' or the end)",
            t.describe()
        ));
    }
    Ok(Some(cond))
}

impl Parser {
    pub(super) fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat_word(&mut self, word: &str) -> bool {
        match self.toks.get(self.pos) {
            Some((_, Tok::Word(w))) if w.eq_ignore_ascii_case(word) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    pub(super) fn or(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.and()?];
        while self.eat_word("or") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.primary()?];
        while self.eat_word("and") {
            items.push(self.primary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Cond::And(items)
        })
    }

    fn primary(&mut self) -> Result<Cond, String> {
        match self.next() {
            Some((at, Tok::LParen)) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("parentheses nested too deeply at position {at}"));
                }
                let cond = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some((_, Tok::RParen)) => Ok(cond),
                    Some((at2, t)) => Err(format!(
                        "expected ')' at position {at2}, found {}",
                        t.describe()
                    )),
                    None => Err(format!("the '(' at position {at} is not closed")),
                }
            }
            Some((at, Tok::Word(w))) if !is_keyword(&w) => {
                let Some((path, ty)) = field(self.schema, &w) else {
                    return Err(format!(
                        "unknown field '{w}' at position {at} for {}",
                        self.resource
                    ));
                };
                self.comparison(path, ty)
            }
            Some((at, t)) => Err(format!(
                "expected a field name at position {at}, found {}",
                t.describe()
            )),
            None => Err("expected a field name at the end of the conditions".into()),
        }
    }

    fn comparison(&mut self, path: &'static str, ty: Ty) -> Result<Cond, String> {
        let op = match self.next() {
            Some((_, Tok::Op(op))) => op,
            Some((at, Tok::Word(w))) => match w.to_ascii_lowercase().as_str() {
                "like" => Op::Like,
                "contains" => Op::Contains,
                "in" => Op::In,
                "not" => match self.next() {
                    Some((_, Tok::Word(w2))) if w2.eq_ignore_ascii_case("like") => Op::NotLike,
                    Some((_, Tok::Word(w2))) if w2.eq_ignore_ascii_case("contains") => {
                        Op::NotContains
                    }
                    Some((_, Tok::Word(w2))) if w2.eq_ignore_ascii_case("in") => Op::NotIn,
                    _ => {
                        return Err(format!(
                            "'not' at position {at} must be followed by like, contains or in"
                        ));
                    }
                },
                _ => {
                    return Err(format!(
                        "expected an operator after {path} at position {at}, found '{w}'"
                    ));
                }
            },
            Some((at, t)) => {
                return Err(format!(
                    "expected an operator after {path} at position {at}, found {}",
                    t.describe()
                ));
            }
            None => return Err(format!("expected an operator after {path}")),
        };
        let mut values = Vec::new();
        if matches!(op, Op::In | Op::NotIn) {
            match self.next() {
                Some((_, Tok::LParen)) => {}
                Some((at, t)) => {
                    return Err(format!(
                        "expected '(' after {} at position {at}, found {}",
                        op.text(),
                        t.describe()
                    ));
                }
                None => return Err(format!("expected '(' after {path} {}", op.text())),
            }
            loop {
                let (at, value) = self.literal(path, op)?;
                values.push(check_value(path, ty, op, value, true).map_err(|e| at_pos(e, at))?);
                match self.next() {
                    Some((_, Tok::Comma)) => continue,
                    Some((_, Tok::RParen)) => break,
                    Some((at, t)) => {
                        return Err(format!(
                            "expected ',' or ')' at position {at}, found {}",
                            t.describe()
                        ));
                    }
                    None => {
                        return Err(format!("the list after {path} {} is not closed", op.text()));
                    }
                }
            }
        } else {
            let (at, value) = self.literal(path, op)?;
            values.push(check_value(path, ty, op, value, false).map_err(|e| at_pos(e, at))?);
        }
        Ok(Cond::Cmp {
            field: path,
            op,
            values,
        })
    }

    /// A value as written; the `Str` of a number keeps its text.
    fn literal(&mut self, path: &str, op: Op) -> Result<(usize, RawLit), String> {
        match self.next() {
            Some((at, Tok::Str(s))) => Ok((at, RawLit::Str(s))),
            Some((at, Tok::Num(n, text))) => Ok((at, RawLit::Num(n, text))),
            Some((at, Tok::Date(t, _))) => Ok((at, RawLit::Date(t))),
            Some((at, Tok::Word(w))) => match w.to_ascii_lowercase().as_str() {
                "true" => Ok((at, RawLit::Bool(true))),
                "false" => Ok((at, RawLit::Bool(false))),
                "null" => Ok((at, RawLit::Null)),
                _ => Err(format!(
                    "expected a value at position {at}, found '{w}' (strings must be quoted)"
                )),
            },
            Some((at, t)) => Err(format!(
                "expected a value at position {at}, found {}",
                t.describe()
            )),
            None => Err(format!("expected a value after {path} {}", op.text())),
        }
    }
}

/// A value before it is checked against its field.
enum RawLit {
    Str(String),
    Num(f64, String),
    Bool(bool),
    Date(jiff::Timestamp),
    Null,
}

fn at_pos(e: String, at: usize) -> String {
    format!("{e} (at position {at})")
}

/// Checks a value against its field's type and operator, converting where the API does
/// (a quoted number for a numeric field, a bare number for a string field).
fn check_value(path: &str, ty: Ty, op: Op, value: RawLit, in_list: bool) -> Result<Lit, String> {
    if let RawLit::Null = value {
        return if in_list || !matches!(op, Op::Eq | Op::Ne) {
            Err(format!(
                "null can only be compared with = or != ({path} {})",
                op.text()
            ))
        } else {
            Ok(Lit::Null)
        };
    }
    match ty {
        Ty::Obj => {
            return Err(format!(
                "{path} is a reference: compare one of its fields, e.g. {path}/id"
            ));
        }
        Ty::Arr => return Err(format!("{path} is a list and cannot be compared")),
        _ => {}
    }
    let text_op = matches!(op, Op::Like | Op::NotLike | Op::Contains | Op::NotContains);
    if text_op {
        return match (ty, value) {
            (Ty::Str, RawLit::Str(s)) => Ok(Lit::Str(s.to_lowercase())),
            (Ty::Str, _) => Err(format!("{} needs a quoted string", op.text())),
            _ => Err(format!(
                "{} only applies to string fields; {path} is {}",
                op.text(),
                ty.describe()
            )),
        };
    }
    let ordering = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
    match (ty, value) {
        (Ty::Num, RawLit::Num(n, _)) => Ok(Lit::Num(n)),
        (Ty::Num, RawLit::Str(s)) => s
            .trim()
            .parse::<f64>()
            .map(Lit::Num)
            .map_err(|_| format!("{path} is a number; \"{s}\" is not")),
        (Ty::Str, RawLit::Str(s)) => Ok(Lit::Str(s.to_lowercase())),
        (Ty::Str, RawLit::Num(_, text)) => Ok(Lit::Str(text.to_lowercase())),
        (Ty::Bool, RawLit::Bool(_)) if ordering => {
            Err(format!("{path} is a boolean: compare it with = or !="))
        }
        (Ty::Bool, RawLit::Bool(b)) => Ok(Lit::Bool(b)),
        (Ty::Date, RawLit::Date(t)) => Ok(Lit::Date(t)),
        (Ty::Date, RawLit::Str(s)) => Err(format!(
            "{path} is a datetime: write \"{s}\" in brackets, e.g. [2026-08-20T18:04:26Z]"
        )),
        (ty, value) => Err(format!(
            "{path} is {} and cannot be compared with {}",
            ty.describe(),
            match value {
                RawLit::Str(_) => "a string",
                RawLit::Num(..) => "a number",
                RawLit::Bool(_) => "a boolean",
                RawLit::Date(_) => "a datetime",
                RawLit::Null => "null",
            }
        )),
    }
}

/// Case-insensitive equality against an already lower-cased string.
fn eq_ci(s: &str, lower: &str) -> bool {
    s.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// `*` (and SQL's `%`) match any run of characters; both sides lower-cased.
pub(super) fn glob(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && matches!(p[pi], '*' | '%') {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| matches!(c, '*' | '%'))
}

fn lit_eq(v: &Value, lit: &Lit) -> bool {
    match lit {
        Lit::Str(s) => v.as_str().is_some_and(|x| eq_ci(x, s)),
        Lit::Num(n) => v.as_f64() == Some(*n),
        Lit::Bool(b) => v.as_bool() == Some(*b),
        Lit::Date(t) => v.as_str().and_then(parse_instant) == Some(*t),
        Lit::Null => v.is_null(),
    }
}

fn lit_cmp(v: &Value, lit: &Lit) -> Option<Ordering> {
    match lit {
        Lit::Str(s) => v.as_str().map(|x| cmp_ci(x, s)),
        Lit::Num(n) => v.as_f64().and_then(|x| x.partial_cmp(n)),
        Lit::Date(t) => v.as_str().and_then(parse_instant).map(|x| x.cmp(t)),
        Lit::Bool(_) | Lit::Null => None,
    }
}

pub(super) fn eval(cond: &Cond, record: &Value) -> bool {
    match cond {
        Cond::Or(items) => items.iter().any(|c| eval(c, record)),
        Cond::And(items) => items.iter().all(|c| eval(c, record)),
        Cond::Cmp { field, op, values } => {
            let v = get_path(record, field).unwrap_or(&Value::Null);
            if let [Lit::Null] = values.as_slice() {
                return (*op == Op::Eq) == v.is_null();
            }
            // SQL semantics: a null field compares false with everything but null.
            if v.is_null() {
                return false;
            }
            let first = &values[0];
            let text = || v.as_str().map(str::to_lowercase);
            let pattern = || match first {
                Lit::Str(s) => s.as_str(),
                _ => "",
            };
            match op {
                Op::Eq => lit_eq(v, first),
                Op::Ne => !lit_eq(v, first),
                Op::Lt => lit_cmp(v, first) == Some(Ordering::Less),
                Op::Le => matches!(lit_cmp(v, first), Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => lit_cmp(v, first) == Some(Ordering::Greater),
                Op::Ge => matches!(lit_cmp(v, first), Some(Ordering::Greater | Ordering::Equal)),
                Op::Like => text().is_some_and(|t| glob(&t, pattern())),
                Op::NotLike => text().is_some_and(|t| !glob(&t, pattern())),
                Op::Contains => text().is_some_and(|t| t.contains(pattern())),
                Op::NotContains => text().is_some_and(|t| !t.contains(pattern())),
                Op::In => values.iter().any(|l| lit_eq(v, l)),
                Op::NotIn => !values.iter().any(|l| lit_eq(v, l)),
            }
        }
    }
}

/// Ordering for `orderBy`: nulls first, strings case-insensitive.
pub(super) fn cmp_json(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => cmp_ci(x, y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}
