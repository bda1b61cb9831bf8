//! A tiny arithmetic expression evaluator: tokenizer, Pratt parser and
//! interpreter with variables.
//!
//! Open this file in pie-edit and type inside a function: the editor
//! suggests the next line as ghost text, Tab accepts it.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Write};

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Number(f64),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    LParen,
    RParen,
    Assign,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    UnexpectedChar(char, usize),
    UnexpectedEnd,
    UnexpectedToken(Token),
    UnknownVariable(String),
    DivisionByZero,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnexpectedChar(c, at) => write!(f, "unexpected character {c:?} at {at}"),
            Error::UnexpectedEnd => write!(f, "unexpected end of input"),
            Error::UnexpectedToken(t) => write!(f, "unexpected token {t:?}"),
            Error::UnknownVariable(name) => write!(f, "unknown variable {name}"),
            Error::DivisionByZero => write!(f, "division by zero"),
        }
    }
}

impl std::error::Error for Error {}

pub fn tokenize(input: &str) -> Result<Vec<Token>, Error> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '0'..='9' | '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let value = text.parse().map_err(|_| Error::UnexpectedChar(c, start))?;
                tokens.push(Token::Number(value));
            }
            'a'..='z' | 'A'..='Z' | '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            '+' => {
                tokens.push(Token::Plus);
                i += 1;
            }
            '-' => {
                tokens.push(Token::Minus);
                i += 1;
            }
            '*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            '/' => {
                tokens.push(Token::Slash);
                i += 1;
            }
            '^' => {
                tokens.push(Token::Caret);
                i += 1;
            }
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            '=' => {
                tokens.push(Token::Assign);
                i += 1;
            }
            other => return Err(Error::UnexpectedChar(other, i)),
        }
    }
    Ok(tokens)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Var(String),
    Neg(Box<Expr>),
    Binary(Box<Expr>, Token, Box<Expr>),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn binding_power(token: &Token) -> Option<(u8, u8)> {
        match token {
            Token::Plus | Token::Minus => Some((1, 2)),
            Token::Star | Token::Slash => Some((3, 4)),
            Token::Caret => Some((6, 5)),
            _ => None,
        }
    }

    fn expression(&mut self, min_power: u8) -> Result<Expr, Error> {
        let mut left = match self.next().ok_or(Error::UnexpectedEnd)? {
            Token::Number(n) => Expr::Number(n),
            Token::Ident(name) => Expr::Var(name),
            Token::Minus => Expr::Neg(Box::new(self.expression(5)?)),
            Token::LParen => {
                let inner = self.expression(0)?;
                match self.next() {
                    Some(Token::RParen) => inner,
                    Some(other) => return Err(Error::UnexpectedToken(other)),
                    None => return Err(Error::UnexpectedEnd),
                }
            }
            other => return Err(Error::UnexpectedToken(other)),
        };
        while let Some(op) = self.peek().cloned() {
            let Some((left_power, right_power)) = Self::binding_power(&op) else {
                break;
            };
            if left_power < min_power {
                break;
            }
            self.next();
            let right = self.expression(right_power)?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }
}

pub fn parse(tokens: Vec<Token>) -> Result<Expr, Error> {
    let mut parser = Parser { tokens, pos: 0 };
    let expr = parser.expression(0)?;
    match parser.next() {
        None => Ok(expr),
        Some(extra) => Err(Error::UnexpectedToken(extra)),
    }
}

#[derive(Default)]
pub struct Interpreter {
    vars: HashMap<String, f64>,
}

impl Interpreter {
    pub fn eval(&self, expr: &Expr) -> Result<f64, Error> {
        match expr {
            Expr::Number(n) => Ok(*n),
            Expr::Var(name) => self.vars.get(name).copied().ok_or_else(|| Error::UnknownVariable(name.clone())),
            Expr::Neg(inner) => Ok(-self.eval(inner)?),
            Expr::Binary(left, op, right) => {
                let (a, b) = (self.eval(left)?, self.eval(right)?);
                match op {
                    Token::Plus => Ok(a + b),
                    Token::Minus => Ok(a - b),
                    Token::Star => Ok(a * b),
                    Token::Slash if b == 0.0 => Err(Error::DivisionByZero),
                    Token::Slash => Ok(a / b),
                    Token::Caret => Ok(a.powf(b)),
                    other => Err(Error::UnexpectedToken(other.clone())),
                }
            }
        }
    }

    /// Run one line: `name = expr` assigns, anything else is evaluated.
    pub fn run_line(&mut self, line: &str) -> Result<f64, Error> {
        let mut tokens = tokenize(line)?;
        if let [Token::Ident(name), Token::Assign, ..] = tokens.as_slice() {
            let name = name.clone();
            tokens.drain(..2);
            let value = self.eval(&parse(tokens)?)?;
            self.vars.insert(name, value);
            return Ok(value);
        }
        self.eval(&parse(tokens)?)
    }
}

fn main() -> io::Result<()> {
    let mut interpreter = Interpreter::default();
    let stdin = io::stdin();
    let mut stdout = io::stdout();
    write!(stdout, "> ")?;
    stdout.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            match interpreter.run_line(&line) {
                Ok(value) => writeln!(stdout, "{value}")?,
                Err(err) => writeln!(stdout, "error: {err}")?,
            }
        }
        write!(stdout, "> ")?;
        stdout.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_variables() {
        let mut interp = Interpreter::default();
        assert_eq!(interp.run_line("x = 2 + 3 * 4").unwrap(), 14.0);
        assert_eq!(interp.run_line("(x - 4) / 2 ^ 2").unwrap(), 2.5);
        assert_eq!(interp.run_line("1 / 0"), Err(Error::DivisionByZero));
    }
}
