//! Format-preserving rewrite: a manifest's YAML text edited so that it holds a new value,
//! with comments, key order and formatting elsewhere kept, so that a round's diff shows
//! only the lines it changed.
//!
//! The old and new values are compared member by member; each difference becomes one
//! text edit (replace a value, insert a member, delete a member), located through the
//! positions the structural scan records. Values that change shape are written in flow
//! style on their key's line (`loss: {kind: focal, gamma: 2.0}`); new members go after
//! the last member of their mapping, at its indentation. The result is parsed again and
//! must equal the new value, so an edit that the text's layout defeats is an error, never
//! a silently different manifest.

use serde_json::{Map, Value};

use crate::agent::patch::{Change as Edit, changes};
use crate::source::{SourceMap, push_segment, scan};

/// Why a text could not be rewritten in place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot rewrite the manifest in place: {0}")]
pub struct RewriteError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RewriteError> {
    Err(RewriteError(msg.into()))
}

/// The text of `text` changed to hold `new`.
pub fn rewrite(text: &str, new: &Value) -> Result<String, RewriteError> {
    let old: Value = serde_norway::from_str(text)
        .map_err(|e| RewriteError(format!("the manifest is not YAML: {e}")))?;
    let edits = changes(&old, new);
    let mut out = text.to_owned();
    let mut current = old;
    for edit in &edits {
        out = Doc::new(&out)?.apply(edit, &current)?;
        current = serde_norway::from_str(&out)
            .map_err(|e| RewriteError(format!("an edit left YAML that does not parse: {e}")))?;
    }
    if &current != new {
        return err(
            "the edited text does not hold the new values; the layout around them is unusual",
        );
    }
    Ok(out)
}

/// Where a mapping member's value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// On the key's line, from this byte.
    Inline(usize),
    /// On the lines below the key (a block mapping or sequence), or nowhere (null).
    Block,
}

struct Doc<'a> {
    text: &'a str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
    map: SourceMap,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Result<Doc<'a>, RewriteError> {
        let map = scan(text).map_err(|e| {
            RewriteError(format!(
                "the manifest does not scan: {}",
                e.first().map_or("", |e| e.message.as_str())
            ))
        })?;
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ok(Doc { text, starts, map })
    }

    fn n_lines(&self) -> usize {
        if self.text.ends_with('\n') {
            self.starts.len() - 1
        } else {
            self.starts.len()
        }
    }

    /// Line `i` (from 0) without its line end.
    fn line(&self, i: usize) -> &'a str {
        let s = self.starts[i];
        let e = self.starts.get(i + 1).map_or(self.text.len(), |e| e - 1);
        &self.text[s..e]
    }

    fn line_of(&self, byte: usize) -> usize {
        self.starts.partition_point(|s| *s <= byte) - 1
    }

    /// The byte offset of a line (from 1) and character column (from 1).
    fn offset(&self, line: usize, col: usize) -> usize {
        let l = line.saturating_sub(1).min(self.starts.len() - 1);
        let s = self.starts[l];
        self.text[s..]
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| s + i)
    }

    fn key_offset(&self, pointer: &str) -> Result<usize, RewriteError> {
        match self.map.key_at(pointer) {
            Some(m) => Ok(self.offset(m.line, m.col)),
            None => err(format!("`{pointer}` is not a mapping member in the text")),
        }
    }

    /// The byte just past the `:` that follows the key starting at `at`.
    fn colon_after(&self, at: usize) -> Result<usize, RewriteError> {
        let bytes = self.text.as_bytes();
        let mut i = at;
        if matches!(bytes.get(i), Some(b'"' | b'\'')) {
            i = quoted_end(self.text, i)?;
        }
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => break,
                b':' if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t' | b'\n' | b'\r'))
                    || matches!(
                        bytes.get(i + 1),
                        Some(b',' | b'}' | b']' | b'{' | b'[' | b'"' | b'\'')
                    ) =>
                {
                    return Ok(i + 1);
                }
                _ => i += 1,
            }
        }
        err("a key without its `:`")
    }

    /// Where the value of the member at `pointer` is written.
    fn place(&self, pointer: &str) -> Result<Place, RewriteError> {
        let colon = self.colon_after(self.key_offset(pointer)?)?;
        let rest = &self.text[colon..];
        let skip = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let at = colon + skip;
        match self.text.as_bytes().get(at) {
            None | Some(b'\n' | b'\r' | b'#') => Ok(Place::Block),
            Some(_) => Ok(Place::Inline(at)),
        }
    }

    /// Whether the value at `pointer` is written inside a flow collection.
    fn in_flow(&self, pointer: &str) -> Result<bool, RewriteError> {
        let mut p = pointer;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                return Ok(false);
            }
            if let Ok(Place::Inline(at)) = self.place(p)
                && matches!(self.text.as_bytes()[at], b'{' | b'[')
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The byte just past an inline value starting at `at`.
    fn inline_end(&self, at: usize, in_flow: bool) -> Result<usize, RewriteError> {
        let bytes = self.text.as_bytes();
        match bytes[at] {
            b'{' | b'[' => flow_end(self.text, at),
            b'"' | b'\'' => quoted_end(self.text, at),
            b'|' | b'>' => err("a block scalar (`|` or `>`) cannot be edited in place"),
            b'&' | b'*' | b'!' => err("anchors, aliases and tags cannot be edited in place"),
            _ => {
                let mut i = at;
                while i < bytes.len() {
                    let c = bytes[i];
                    if c == b'\n' || (c == b'#' && i > at && matches!(bytes[i - 1], b' ' | b'\t')) {
                        break;
                    }
                    if in_flow && matches!(c, b',' | b']' | b'}') {
                        break;
                    }
                    i += 1;
                }
                Ok(at + self.text[at..i].trim_end().len())
            }
        }
    }

    /// The last line (from 0) of the block member whose key is on `key_line` at `indent`.
    fn entry_end(&self, key_line: usize, indent: usize) -> usize {
        let mut end = key_line;
        for i in key_line + 1..self.n_lines() {
            let line = self.line(i);
            let t = line.trim_start_matches(' ');
            if t.trim().is_empty() || t.starts_with('#') {
                continue;
            }
            let ind = line.len() - t.len();
            if ind > indent || (ind == indent && (t == "-" || t.starts_with("- "))) {
                end = i;
            } else {
                break;
            }
        }
        end
    }

    fn splice(&self, start: usize, end: usize, with: &str) -> String {
        format!("{}{with}{}", &self.text[..start], &self.text[end..])
    }

    /// Removes whole lines `first..=last` (from 0).
    fn remove_lines(&self, first: usize, last: usize) -> String {
        let s = self.starts[first];
        let e = self
            .starts
            .get(last + 1)
            .copied()
            .unwrap_or(self.text.len());
        self.splice(s, e, "")
    }

    fn apply(&self, edit: &Edit, current: &Value) -> Result<String, RewriteError> {
        match edit {
            Edit::Set(p, v) if p.is_empty() => {
                let _ = v;
                err("the whole document cannot be replaced")
            }
            Edit::Set(p, v) => {
                let key_at = self.key_offset(p)?;
                match self.place(p)? {
                    Place::Inline(at) => {
                        let end = self.inline_end(at, self.in_flow(p)?)?;
                        Ok(self.splice(at, end, &inline(v)))
                    }
                    Place::Block => {
                        let colon = self.colon_after(key_at)?;
                        let key_line = self.line_of(key_at);
                        let line_end = self.starts[key_line] + self.line(key_line).len();
                        let comment = self.text[colon..line_end].trim();
                        let indent = key_at - self.starts[key_line];
                        let last = self.entry_end(key_line, indent);
                        let mut new_line =
                            format!("{} {}", &self.text[self.starts[key_line]..colon], inline(v));
                        if !comment.is_empty() {
                            new_line.push_str("  ");
                            new_line.push_str(comment);
                        }
                        new_line.push('\n');
                        let e = self
                            .starts
                            .get(last + 1)
                            .copied()
                            .unwrap_or(self.text.len());
                        Ok(self.splice(self.starts[key_line], e, &new_line))
                    }
                }
            }
            Edit::Delete(p) => {
                let key_at = self.key_offset(p)?;
                if self.in_flow(p)? {
                    let Place::Inline(at) = self.place(p)? else {
                        return err("a flow member without a value");
                    };
                    let end = self.inline_end(at, true)?;
                    let bytes = self.text.as_bytes();
                    let mut after = end;
                    while matches!(bytes.get(after), Some(b' ' | b'\t')) {
                        after += 1;
                    }
                    if bytes.get(after) == Some(&b',') {
                        after += 1;
                        while matches!(bytes.get(after), Some(b' ' | b'\t')) {
                            after += 1;
                        }
                        return Ok(self.splice(key_at, after, ""));
                    }
                    let before = self.text[..key_at].trim_end_matches([' ', '\t']);
                    let start = if before.ends_with(',') {
                        before.len() - 1
                    } else {
                        key_at
                    };
                    return Ok(self.splice(start, end, ""));
                }
                let key_line = self.line_of(key_at);
                if self.line(key_line)[..key_at - self.starts[key_line]].trim() != "" {
                    return err(format!("`{p}` shares its line with other text"));
                }
                let last = self.entry_end(key_line, key_at - self.starts[key_line]);
                Ok(self.remove_lines(key_line, last))
            }
            Edit::Insert(parent, key, v) => {
                let flow_at = if parent.is_empty() {
                    None
                } else {
                    match self.place(parent)? {
                        Place::Inline(at) if self.text.as_bytes()[at] == b'{' => Some(at),
                        Place::Inline(_) => return err(format!("`{parent}` is not a mapping")),
                        Place::Block => None,
                    }
                };
                let member = format!("{}: {}", scalar(&Value::String(key.clone())), inline(v));
                if let Some(at) = flow_at {
                    let close = flow_end(self.text, at)? - 1;
                    let inner = &self.text[at + 1..close];
                    if inner.trim().is_empty() {
                        return Ok(self.splice(at + 1, close, &member));
                    }
                    let last = at + 1 + inner.trim_end().len();
                    return Ok(self.splice(last, last, &format!(", {member}")));
                }
                let Some(Value::Object(siblings)) = crate::agent::patch::get(current, parent)
                else {
                    return err(format!("`{parent}` is not a mapping"));
                };
                let mut indent = None;
                let mut last_line = None;
                for k in siblings.keys() {
                    let at = self.key_offset(&push_segment(parent, k))?;
                    let line = self.line_of(at);
                    let ind = at - self.starts[line];
                    indent = Some(indent.map_or(ind, |i: usize| i.min(ind)));
                    last_line = Some(last_line.map_or(line, |l: usize| l.max(line)));
                }
                let (Some(indent), Some(last_line)) = (indent, last_line) else {
                    return err(format!(
                        "`{parent}` has no members to place a new one beside"
                    ));
                };
                let end = self.entry_end(last_line, indent);
                let text = block_member(key, v, indent);
                let at = self.starts.get(end + 1).copied().unwrap_or(self.text.len());
                if at == self.text.len() && !self.text.ends_with('\n') {
                    return Ok(format!("{}\n{text}", self.text));
                }
                Ok(self.splice(at, at, &text))
            }
        }
    }
}

/// The byte just past the quoted scalar starting at `at`.
fn quoted_end(text: &str, at: usize) -> Result<usize, RewriteError> {
    let bytes = text.as_bytes();
    let q = bytes[at];
    let mut i = at + 1;
    while i < bytes.len() {
        if q == b'"' && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == q {
            if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    err("an unterminated quoted string")
}

/// The byte just past the flow collection opening at `at`.
fn flow_end(text: &str, at: usize) -> Result<usize, RewriteError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                i = quoted_end(text, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    err("an unterminated flow collection")
}

/// Words YAML reads as something other than a string.
fn special_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~"
    )
}

/// A scalar in YAML: strings plain when that reads back as the same string, else quoted.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = s
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
                && !special_word(s);
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            }
        }
        Value::Number(n) => {
            let t = n.to_string();
            // YAML 1.1 readers want a dot in a float with an exponent.
            match t.find(['e', 'E']) {
                Some(i) if !t[..i].contains('.') => format!("{}.0{}", &t[..i], &t[i..]),
                _ => t,
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => inline(other),
    }
}

/// A value in YAML's flow style, on one line.
pub fn inline(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!("{{{}}}", members(m).join(", ")),
        other => scalar(other),
    }
}

fn members(m: &Map<String, Value>) -> Vec<String> {
    m.iter()
        .map(|(k, v)| format!("{}: {}", scalar(&Value::String(k.clone())), inline(v)))
        .collect()
}

/// A member written at `indent`: on one line when it fits in 100 columns, else as a block.
fn block_member(key: &str, v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let k = scalar(&Value::String(key.to_owned()));
    let one = format!("{pad}{k}: {}\n", inline(v));
    match v {
        Value::Object(m) if one.len() > 101 && !m.is_empty() => {
            let mut out = format!("{pad}{k}:\n");
            for (ck, cv) in m {
                out.push_str(&block_member(ck, cv, indent + 2));
            }
            out
        }
        _ => one,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::diff::{counts, unified};
    use crate::agent::patch::{Patch, apply};
    use serde_json::json;

    const COMMENTED: &str = "\
# A pipeline for the tests.
version: 1
name: demo   # the name
stages:
  train:
    uses: classifier.train
    with:
      dataset: images
      lr: 0.001  # from the template
      loss: {kind: bce, class_weighted: true}  # one logit
      sampler:
        kind: group_balanced   # balance the drain
        attribute: chest_drain
      from: [drain_labels]

      early_stopping: 5
  # The evaluation.
  evaluate:
    uses: evaluate
    with: {model: train, confound: drain}
";

    fn patched(text: &str, patch: Value) -> String {
        let old: Value = serde_norway::from_str(text).unwrap();
        let patch: Patch = serde_json::from_value(patch).unwrap();
        let new = apply(&old, &patch).unwrap();
        let out = rewrite(text, &new).unwrap();
        let back: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(back, new);
        out
    }

    /// The diff of a rewrite: exactly the expected removed and added lines.
    fn check(patch: Value, removed: &[&str], added: &[&str]) {
        let out = patched(COMMENTED, patch);
        let d = unified(COMMENTED, &out, "a", "b");
        let got_del: Vec<&str> = d
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .map(|l| &l[1..])
            .collect();
        let got_add: Vec<&str> = d
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .map(|l| &l[1..])
            .collect();
        assert_eq!(got_del, removed, "{d}");
        assert_eq!(got_add, added, "{d}");
        assert_eq!(counts(&d), (removed.len(), added.len()));
        // Every comment of the original survives unless its line was replaced.
        for line in COMMENTED.lines().filter(|l| l.contains('#')) {
            if !removed.contains(&line) {
                assert!(out.contains(line), "lost `{line}`:\n{out}");
            }
        }
    }

    #[test]
    fn a_scalar_changes_on_its_line_and_keeps_its_comment() {
        check(
            json!([{"op": "replace", "path": "/stages/train/with/lr", "value": 0.0003}]),
            &["      lr: 0.001  # from the template"],
            &["      lr: 0.0003  # from the template"],
        );
    }

    #[test]
    fn flow_members_change_join_and_leave_in_place() {
        check(
            json!([{"op": "replace", "path": "/stages/train/with/loss/kind", "value": "focal"},
                   {"op": "add", "path": "/stages/train/with/loss/gamma", "value": 2.0}]),
            &["      loss: {kind: bce, class_weighted: true}  # one logit"],
            &["      loss: {kind: focal, class_weighted: true, gamma: 2.0}  # one logit"],
        );
        check(
            json!([{"op": "remove", "path": "/stages/train/with/loss/kind"}]),
            &["      loss: {kind: bce, class_weighted: true}  # one logit"],
            &["      loss: {class_weighted: true}  # one logit"],
        );
        check(
            json!([{"op": "remove", "path": "/stages/evaluate/with/confound"}]),
            &["    with: {model: train, confound: drain}"],
            &["    with: {model: train}"],
        );
    }

    #[test]
    fn block_members_are_added_after_the_last_and_removed_with_their_lines() {
        check(
            json!([{"op": "add", "path": "/stages/train/with/mixup", "value": {"alpha": 0.2}}]),
            &[],
            &["      mixup: {alpha: 0.2}"],
        );
        let out = patched(
            COMMENTED,
            json!([{"op": "add", "path": "/stages/train/with/mixup", "value": {"alpha": 0.2}}]),
        );
        assert!(
            out.contains("      early_stopping: 5\n      mixup: {alpha: 0.2}\n  # The evaluation."),
            "{out}"
        );
        check(
            json!([{"op": "remove", "path": "/stages/train/with/sampler"}]),
            &[
                "      sampler:",
                "        kind: group_balanced   # balance the drain",
                "        attribute: chest_drain",
            ],
            &[],
        );
        check(
            json!([{"op": "replace", "path": "/stages/train/with/sampler/kind", "value": "class_balanced"},
                   {"op": "remove", "path": "/stages/train/with/sampler/attribute"}]),
            &[
                "        kind: group_balanced   # balance the drain",
                "        attribute: chest_drain",
            ],
            &["        kind: class_balanced   # balance the drain"],
        );
    }

    #[test]
    fn mappings_change_member_by_member_and_other_shapes_go_on_the_key_line() {
        check(
            json!([{"op": "replace", "path": "/stages/train/with/sampler", "value": {"kind": "ratio", "negatives_per_positive": 2.0}}]),
            &[
                "        kind: group_balanced   # balance the drain",
                "        attribute: chest_drain",
            ],
            &[
                "        kind: ratio   # balance the drain",
                "        negatives_per_positive: 2.0",
            ],
        );
        check(
            json!([{"op": "replace", "path": "/stages/train/with/sampler", "value": "uniform"}]),
            &[
                "      sampler:",
                "        kind: group_balanced   # balance the drain",
                "        attribute: chest_drain",
            ],
            &["      sampler: uniform"],
        );
        check(
            json!([{"op": "replace", "path": "/stages/train/with/from", "value": ["drain_labels", "other"]}]),
            &["      from: [drain_labels]"],
            &["      from: [drain_labels, other]"],
        );
    }

    #[test]
    fn new_stages_go_at_the_end_of_the_stages() {
        let out = patched(
            COMMENTED,
            json!([{"op": "add", "path": "/stages/pseudo", "value": {"uses": "evaluate", "with": {"model": "train"}}}]),
        );
        assert!(out.ends_with("    with: {model: train, confound: drain}\n  pseudo: {uses: evaluate, with: {model: train}}\n"), "{out}");
    }

    #[test]
    fn strings_that_yaml_would_read_otherwise_are_quoted() {
        for s in [
            "yes",
            "no",
            "on",
            "1.5",
            "a: b",
            "#x",
            "",
            "x, y",
            "[a]",
            "null",
            "Ünïcode",
        ] {
            let out = patched(
                COMMENTED,
                json!([{"op": "replace", "path": "/name", "value": s}]),
            );
            assert!(out.contains("# the name"), "{out}");
        }
        for n in [json!(1e-5), json!(3), json!(-2.5), json!(1e21)] {
            patched(
                COMMENTED,
                json!([{"op": "replace", "path": "/stages/train/with/lr", "value": n}]),
            );
        }
    }

    #[test]
    fn layouts_it_cannot_edit_are_errors_not_different_manifests() {
        let text = "version: 1\nrequest: >-\n  long\n  text\nname: x\n";
        let new = json!({"version": 1, "request": "other", "name": "x"});
        let e = rewrite(text, &new).unwrap_err();
        assert!(e.0.contains("block scalar"), "{e}");
    }
}
