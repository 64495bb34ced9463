//! TOML files read with every error at its line: the agent's configuration and
//! `--rules FILE`. Values are turned into the words the command-line options take, so
//! that a file accepts and refuses exactly what the options do.

use std::ops::Range;
use std::path::{Path, PathBuf};

use keepalive_config::Var;
use toml::Spanned;

/// Why a file cannot be used: `FILE:LINE: what is wrong`.
#[derive(Debug)]
pub struct FileError {
    file: PathBuf,
    line: Option<usize>,
    message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What is wrong, and where in the text.
#[derive(Debug)]
pub struct Wrong {
    pub at: Option<Range<usize>>,
    pub message: String,
}

impl Wrong {
    pub fn at<T>(value: &Spanned<T>, message: String) -> Wrong {
        Wrong {
            at: Some(value.span()),
            message,
        }
    }

    /// A TOML syntax or shape error, where the parser found it.
    pub fn toml(error: toml::de::Error) -> Wrong {
        Wrong {
            at: error.span(),
            message: error.message().trim_end().to_string(),
        }
    }
}

/// Reads `file` and hands its text to `parse`, whose errors get the file's name and
/// their line.
pub fn read<T>(file: &Path, parse: impl FnOnce(&str) -> Result<T, Wrong>) -> Result<T, FileError> {
    let text = read_at_most(file, MAX_SIZE).map_err(|e| FileError {
        file: file.to_path_buf(),
        line: None,
        message: format!("cannot read it: {}", crate::exit::describe(&e)),
    })?;
    parse(&text).map_err(|wrong| FileError {
        file: file.to_path_buf(),
        line: wrong.at.map(|span| line_of(&text, span.start)),
        message: wrong.message,
    })
}

/// The largest file read: far more than 127 rules of long lists take, and a bound on
/// what a wrong path (/dev/zero) costs.
const MAX_SIZE: u64 = 4 << 20;

fn read_at_most(file: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "it is larger than {} MiB, which no configuration needs",
            limit >> 20
        )));
    }
    Ok(text)
}

/// A value as the options take it: a string as written, a whole number as its digits.
pub fn word(key: &str, value: &Spanned<toml::Value>) -> Result<Vec<u8>, Wrong> {
    match value.get_ref() {
        toml::Value::String(text) => Ok(text.as_bytes().to_vec()),
        toml::Value::Integer(number) => Ok(number.to_string().into_bytes()),
        other => Err(Wrong::at(
            value,
            format!(
                "{key} = {} is a {}; accepted: a string or a whole number",
                shown(other),
                other.type_str()
            ),
        )),
    }
}

/// A list as the options take it, items separated by commas: a string as written, a
/// whole number, or an array of strings and whole numbers.
pub fn list(key: &str, value: &Spanned<toml::Value>) -> Result<String, Wrong> {
    let item = |v: &toml::Value| match v {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        _ => None,
    };
    let items = match value.get_ref() {
        toml::Value::Array(array) if array.is_empty() => {
            return Err(Wrong::at(
                value,
                format!("{key} = [] is an empty list; leave the key out for no such filter"),
            ));
        }
        toml::Value::Array(array) => array.iter().map(item).collect::<Option<Vec<_>>>(),
        single => item(single).map(|one| vec![one]),
    };
    items.map(|items| items.join(",")).ok_or_else(|| {
        Wrong::at(
            value,
            format!(
                "{key} = {} is not a list of strings or whole numbers; accepted: a string, \
                 a whole number, or an array of them",
                shown(value.get_ref())
            ),
        )
    })
}

/// `idle = "0" is out of range; accepted: ...`, in the library's words.
pub fn refused(
    key: &str,
    value: &Spanned<toml::Value>,
    error: keepalive_config::ValueError,
    var: Var,
) -> Wrong {
    Wrong::at(
        value,
        format!(
            "{key} = {} {error}; accepted: {}",
            shown(value.get_ref()),
            var.accepted()
        ),
    )
}

/// A value as it was written, near enough for a message: strings quoted, numbers and
/// booleans as they are, anything else by its kind.
pub fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(number) => number.to_string(),
        toml::Value::Float(number) => format!("{number:?}"),
        toml::Value::Boolean(truth) => truth.to_string(),
        toml::Value::Array(items) => {
            let shown: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", shown.join(", "))
        }
        other => format!("(a {})", other.type_str()),
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
