//! A small CSV reader (RFC 4180: commas, double-quoted fields with `""` escapes and line
//! breaks inside quotes, LF or CRLF) that keeps the line and column of every field, so a
//! problem in a predictions file can be pointed at.

use std::path::Path;

use crate::diag::{Diagnostic, Mark};

use super::error::InputError;

/// One field with where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The text, unquoted; unquoted fields lose surrounding spaces and tabs.
    pub text: String,
    /// Where it starts (line and column from 1).
    pub mark: Mark,
}

/// One record (row) with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Line of the record's first character, from 1.
    pub line: usize,
    /// Its fields.
    pub fields: Vec<Field>,
}

/// Splits CSV text into records, skipping empty lines. `path` is only for messages.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Record>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1usize, 1usize);
    let mut fields: Vec<Field> = Vec::new();
    let mut record_line = 1;
    // Whether the current record has any content yet (an empty line is no record).
    let mut started = false;
    loop {
        // At the start of a field.
        let start = Mark::new(line, col);
        let mut text_out = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            started = true;
            chars.next();
            col += 1;
            loop {
                match chars.next() {
                    None => {
                        return Err(Diagnostic::new(path, start, "a quoted field is never closed")
                            .hint("end the field with `\"`, and write a quote inside a field as `\"\"`")
                            .into());
                    }
                    Some('"') => {
                        col += 1;
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            col += 1;
                            text_out.push('"');
                        } else {
                            break;
                        }
                    }
                    Some('\n') => {
                        line += 1;
                        col = 1;
                        text_out.push('\n');
                    }
                    Some(c) => {
                        col += 1;
                        text_out.push(c);
                    }
                }
            }
        }
        // The rest of the field, up to a comma or the end of the line.
        let mut tail = String::new();
        let end = loop {
            match chars.peek().copied() {
                None => break None,
                Some(',') => {
                    chars.next();
                    col += 1;
                    break Some(',');
                }
                Some('\n') => {
                    chars.next();
                    break Some('\n');
                }
                Some('\r') => {
                    chars.next();
                    col += 1;
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                        break Some('\n');
                    }
                    tail.push('\r');
                }
                Some(c) => {
                    chars.next();
                    col += 1;
                    tail.push(c);
                }
            }
        };
        if quoted {
            if !tail.trim().is_empty() {
                return Err(Diagnostic::new(
                    path,
                    start,
                    "text follows the closing quote of a field",
                )
                .hint(
                    "put the whole field inside the quotes, and write a quote inside it as `\"\"`",
                )
                .into());
            }
        } else {
            let trimmed = tail.trim_matches([' ', '\t']);
            started |= !trimmed.is_empty() || end == Some(',');
            text_out = trimmed.to_owned();
        }
        fields.push(Field {
            text: text_out,
            mark: start,
        });
        match end {
            Some(',') => {}
            Some(_) | None => {
                if started {
                    records.push(Record {
                        line: record_line,
                        fields: std::mem::take(&mut fields),
                    });
                } else {
                    fields.clear();
                }
                if end.is_none() {
                    break;
                }
                line += 1;
                col = 1;
                record_line = line;
                started = false;
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(r: &Record) -> Vec<&str> {
        r.fields.iter().map(|f| f.text.as_str()).collect()
    }

    #[test]
    fn plain_quoted_and_crlf() {
        let recs = parse(
            Path::new("x.csv"),
            "\u{feff}id,label,prob\r\na, 1 ,0.5\r\n\r\n\"b,\"\"c\"\"\",0,\"0.25\"\n",
        )
        .unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(texts(&recs[0]), ["id", "label", "prob"]);
        assert_eq!(texts(&recs[1]), ["a", "1", "0.5"]);
        assert_eq!(recs[1].fields[2].mark, Mark::new(2, 7));
        assert_eq!(recs[2].line, 4);
        assert_eq!(texts(&recs[2]), ["b,\"c\"", "0", "0.25"]);
    }

    #[test]
    fn line_breaks_inside_quotes_keep_the_start_line() {
        let recs = parse(Path::new("x.csv"), "a,b\n\"x\ny\",2\nz,3").unwrap();
        assert_eq!(recs[1].line, 2);
        assert_eq!(texts(&recs[1]), ["x\ny", "2"]);
        assert_eq!(recs[2].line, 4);
        assert_eq!(recs[2].fields[1].mark, Mark::new(4, 3));
    }

    #[test]
    fn empty_fields_are_kept() {
        let recs = parse(Path::new("x.csv"), "a,,c\n,\n").unwrap();
        assert_eq!(texts(&recs[0]), ["a", "", "c"]);
        assert_eq!(texts(&recs[1]), ["", ""]);
    }

    #[test]
    fn unclosed_quote_is_an_error_at_its_start() {
        let e = parse(Path::new("x.csv"), "a,b\n1,\"2\n").unwrap_err();
        assert_eq!(e.diagnostic().mark, Mark::new(2, 3));
        let e = parse(Path::new("x.csv"), "a\n\"1\"x\n").unwrap_err();
        assert!(e.to_string().contains("closing quote"), "{e}");
    }
}
