//! A structural pass over the YAML text: positions of every key and value, and the
//! checks that must happen before any value is built (duplicate keys, nesting depth,
//! alias expansion, one document only).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

use crate::diag::Mark;

/// Deepest nesting of mappings and sequences a manifest may have.
pub const MAX_DEPTH: usize = 64;

/// Most nodes a manifest may hold once its YAML aliases are expanded.
pub const MAX_NODES: u64 = 100_000;

/// Positions of the keys and values of a YAML document, by JSON pointer.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    values: HashMap<String, Mark>,
    keys: HashMap<String, Mark>,
}

impl SourceMap {
    /// Where the value at `pointer` starts, or where its closest recorded ancestor does.
    pub fn value(&self, pointer: &str) -> Mark {
        let mut p = pointer;
        loop {
            if let Some(m) = self.values.get(p) {
                return *m;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Mark::new(1, 1),
            }
        }
    }

    /// Where the value at `pointer` starts, if the document has it.
    pub fn value_at(&self, pointer: &str) -> Option<Mark> {
        self.values.get(pointer).copied()
    }

    /// Where the key naming the value at `pointer` is, if the value is a mapping's member.
    pub fn key_at(&self, pointer: &str) -> Option<Mark> {
        self.keys.get(pointer).copied()
    }

    /// Where the key naming the value at `pointer` is, falling back to the value's position.
    pub fn key(&self, pointer: &str) -> Mark {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }
}

/// Appends one JSON-pointer segment, escaped as RFC 6901 requires.
pub fn push_segment(pointer: &str, segment: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + segment.len() + 1);
    out.push_str(pointer);
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Turns a JSON pointer into the dotted path users read: `/stages/a/with/x` becomes `stages.a.with.x`.
pub fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// A problem found by the structural pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// Where.
    pub mark: Mark,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

fn mark_of(m: &Marker) -> Mark {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Mark::new(m.line(), m.col() + 1)
}

enum Frame {
    Mapping {
        pointer: String,
        key: Option<String>,
        seen: HashMap<String, Mark>,
        anchor: usize,
        nodes: u64,
    },
    Sequence {
        pointer: String,
        index: usize,
        anchor: usize,
        nodes: u64,
    },
}

impl Frame {
    fn nodes_mut(&mut self) -> &mut u64 {
        match self {
            Frame::Mapping { nodes, .. } | Frame::Sequence { nodes, .. } => nodes,
        }
    }
}

/// Walks the YAML events of `text` once, recording positions and enforcing the structural limits.
pub fn scan(text: &str) -> Result<SourceMap, Vec<SourceError>> {
    let mut map = SourceMap::default();
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchor_sizes: HashMap<usize, u64> = HashMap::new();
    let mut documents = 0usize;
    let mut root_nodes: u64 = 0;
    let mut saw_root = false;
    let mut parser = Parser::new_from_str(text);

    loop {
        let (event, marker) = match parser.next_token() {
            Ok(pair) => pair,
            Err(e) => {
                errors.push(scan_error(&e));
                return Err(errors);
            }
        };
        let mark = mark_of(&marker);
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    errors.push(SourceError {
                        mark,
                        message: "a second YAML document starts here; a manifest is one document"
                            .into(),
                        hint: Some(
                            "remove the `---` line and everything after it, or split the file"
                                .into(),
                        ),
                    });
                    return Err(errors);
                }
            }
            Event::Scalar(value, _, anchor, _) => {
                if let Some(Frame::Mapping {
                    pointer, key, seen, ..
                }) = stack.last_mut()
                    && key.is_none()
                {
                    let child = push_segment(pointer, &value);
                    if let Some(first) = seen.get(&value) {
                        errors.push(SourceError {
                            mark,
                            message: format!(
                                "duplicate key `{value}` (first at line {})",
                                first.line
                            ),
                            hint: Some("keep one of the two entries".into()),
                        });
                    } else {
                        seen.insert(value.clone(), mark);
                    }
                    map.keys.insert(child, mark);
                    *key = Some(value);
                    continue;
                }
                let pointer = child_pointer(&mut stack, &mut saw_root);
                map.values.insert(pointer, mark);
                if anchor > 0 {
                    anchor_sizes.insert(anchor, 1);
                }
                if let Err(e) = add_nodes(&mut stack, &mut root_nodes, 1, mark) {
                    errors.push(e);
                    return Err(errors);
                }
            }
            Event::Alias(id) => {
                if in_key_position(&stack) {
                    errors.push(complex_key(mark));
                    return Err(errors);
                }
                let pointer = child_pointer(&mut stack, &mut saw_root);
                map.values.insert(pointer, mark);
                let size = anchor_sizes.get(&id).copied().unwrap_or(1);
                if let Err(e) = add_nodes(&mut stack, &mut root_nodes, size, mark) {
                    errors.push(e);
                    return Err(errors);
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if in_key_position(&stack) {
                    errors.push(complex_key(mark));
                    return Err(errors);
                }
                let pointer = child_pointer(&mut stack, &mut saw_root);
                map.values.insert(pointer.clone(), mark);
                if stack.len() >= MAX_DEPTH {
                    errors.push(SourceError {
                        mark,
                        message: format!("the manifest nests deeper than {MAX_DEPTH} levels"),
                        hint: Some("a manifest needs only a few levels; flatten this part".into()),
                    });
                    return Err(errors);
                }
                stack.push(match event {
                    Event::MappingStart(..) => Frame::Mapping {
                        pointer,
                        key: None,
                        seen: HashMap::new(),
                        anchor,
                        nodes: 1,
                    },
                    _ => Frame::Sequence {
                        pointer,
                        index: 0,
                        anchor,
                        nodes: 1,
                    },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = stack.pop() else { continue };
                let (anchor, nodes) = match frame {
                    Frame::Mapping { anchor, nodes, .. }
                    | Frame::Sequence { anchor, nodes, .. } => (anchor, nodes),
                };
                if anchor > 0 {
                    anchor_sizes.insert(anchor, nodes);
                }
                if let Err(e) = add_nodes(&mut stack, &mut root_nodes, nodes, mark) {
                    errors.push(e);
                    return Err(errors);
                }
            }
        }
    }
    if !saw_root {
        errors.push(SourceError {
            mark: Mark::FILE,
            message: "the manifest is empty".into(),
            hint: Some("start from a manifest in `manifests/`, or write `version: 1`, `name:` and `stages:`".into()),
        });
    }
    if errors.is_empty() {
        Ok(map)
    } else {
        Err(errors)
    }
}

fn in_key_position(stack: &[Frame]) -> bool {
    matches!(stack.last(), Some(Frame::Mapping { key: None, .. }))
}

fn complex_key(mark: Mark) -> SourceError {
    SourceError {
        mark,
        message: "a mapping key must be a plain string, not a mapping, a sequence or an alias"
            .into(),
        hint: Some("write the key as a plain word".into()),
    }
}

/// The pointer of the next value in the innermost collection, advancing that collection.
fn child_pointer(stack: &mut [Frame], saw_root: &mut bool) -> String {
    match stack.last_mut() {
        None => {
            *saw_root = true;
            String::new()
        }
        Some(Frame::Mapping { pointer, key, .. }) => {
            let k = key.take().unwrap_or_default();
            push_segment(pointer, &k)
        }
        Some(Frame::Sequence { pointer, index, .. }) => {
            let p = push_segment(pointer, &index.to_string());
            *index += 1;
            p
        }
    }
}

fn add_nodes(stack: &mut [Frame], root: &mut u64, n: u64, mark: Mark) -> Result<(), SourceError> {
    let total = match stack.last_mut() {
        Some(frame) => {
            let nodes = frame.nodes_mut();
            *nodes = nodes.saturating_add(n);
            *nodes
        }
        None => {
            *root = root.saturating_add(n);
            *root
        }
    };
    if total > MAX_NODES {
        return Err(SourceError {
            mark,
            message: format!(
                "YAML aliases here expand the manifest to more than {MAX_NODES} nodes"
            ),
            hint: Some(
                "this looks like an alias bomb; write the values out instead of nesting aliases"
                    .into(),
            ),
        });
    }
    Ok(())
}

fn scan_error(e: &yaml_rust2::ScanError) -> SourceError {
    let mark = mark_of(e.marker());
    let info = e.info();
    if info.contains("recursion limit") {
        return SourceError {
            mark,
            message: format!("the manifest nests deeper than the YAML reader allows ({info})"),
            hint: Some("a manifest needs only a few levels; flatten this part".to_owned()),
        };
    }
    let hint = if info.contains("tab") {
        Some("YAML indentation must use spaces, not tabs".to_owned())
    } else {
        Some(
            "the file is not valid YAML; check the indentation and quoting near this position"
                .to_owned(),
        )
    };
    SourceError {
        mark,
        message: format!("not valid YAML: {info}"),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_keys_and_values() {
        let map =
            scan("version: 1\nstages:\n  a:\n    uses: command\n    with: {run: x}\n  b: [1, 2]\n")
                .unwrap();
        assert_eq!(map.key("/stages/a"), Mark::new(3, 3));
        assert_eq!(map.value("/stages/a/uses"), Mark::new(4, 11));
        assert_eq!(map.key("/stages/a/with/run"), Mark::new(5, 12));
        assert_eq!(map.value("/stages/b/1"), Mark::new(6, 10));
        assert_eq!(map.value("/stages/a/with/missing/deeper"), Mark::new(5, 11));
    }

    #[test]
    fn reports_every_duplicate_key() {
        let errors = scan("a: 1\nb: 2\na: 3\nb: 4\n").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].mark, Mark::new(3, 1));
        assert!(errors[0].message.contains("first at line 1"));
    }

    #[test]
    fn refuses_alias_bombs_quickly() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = if i == 1 { String::new() } else { (i - 1).to_string() }));
        }
        let errors = scan(&text).unwrap_err();
        assert!(errors[0].message.contains("expand"), "{:?}", errors);
    }

    #[test]
    fn refuses_deep_nesting() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let errors = scan(&text).unwrap_err();
        assert!(
            errors[0].message.contains("nests deeper")
                || errors[0].message.contains("not valid YAML"),
            "{errors:?}"
        );
    }

    #[test]
    fn escapes_pointer_segments() {
        assert_eq!(push_segment("/a", "b/c~d"), "/a/b~1c~0d");
        assert_eq!(dotted("/a/b~1c~0d"), "a.b/c~d");
    }
}
