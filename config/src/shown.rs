//! Showing a raw value in a one-line message, whatever bytes it holds.

use core::fmt::{self, Write};

/// Displays raw bytes quoted, with anything but printable ASCII escaped (`\xff`,
/// `\n`, `\"`) and long values cut short, so that a hostile value can neither
/// break the message's line nor flood standard error.
///
/// ```
/// use keepalive_config::Shown;
/// assert_eq!(Shown(b"30\xff").to_string(), r#""30\xff""#);
/// ```
pub struct Shown<'a>(pub &'a [u8]);

/// The most bytes of a value a message shows.
const SHOWN_BYTES: usize = 64;

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, cut) = match self.0.get(..SHOWN_BYTES) {
            Some(head) if head.len() < self.0.len() => (head, true),
            _ => (self.0, false),
        };
        f.write_char('"')?;
        for &byte in head {
            match byte {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                b' '..=b'~' => f.write_char(char::from(byte))?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        f.write_char('"')?;
        if cut {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Shown;

    #[test]
    fn printable_ascii_is_shown_as_is() {
        assert_eq!(Shown(b"5m").to_string(), "\"5m\"");
        assert_eq!(Shown(b"").to_string(), "\"\"");
    }

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped() {
        assert_eq!(
            Shown(b"a\"b\\c\nd\te\x1b").to_string(),
            r#""a\"b\\c\nd\te\x1b""#
        );
    }

    #[test]
    fn utf8_is_shown_byte_by_byte() {
        assert_eq!(Shown("é".as_bytes()).to_string(), r#""\xc3\xa9""#);
    }

    #[test]
    fn a_megabyte_value_is_cut_to_64_bytes_with_its_length() {
        let huge = vec![b'9'; 1 << 20];
        let shown = Shown(&huge).to_string();
        assert_eq!(shown, format!("\"{}\"... (1048576 bytes)", "9".repeat(64)));
    }

    #[test]
    fn exactly_64_bytes_is_not_cut() {
        let value = [b'x'; 64];
        assert_eq!(Shown(&value).to_string(), format!("\"{}\"", "x".repeat(64)));
    }
}
