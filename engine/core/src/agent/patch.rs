//! RFC 6902 JSON Patch on `serde_json::Value`, with RFC 6901 pointers.
//!
//! A patch is applied to a copy: either every operation succeeds or the document is left
//! as it was, and the error names the operation that failed and why.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation of a JSON Patch.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum PatchOp {
    /// Adds a value (inserting into an array, or setting an object member).
    Add {
        /// Where.
        path: String,
        /// What.
        value: Value,
    },
    /// Removes the value at `path`.
    Remove {
        /// Where.
        path: String,
    },
    /// Replaces the value at `path`, which must exist.
    Replace {
        /// Where.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Moves the value at `from` to `path`.
    Move {
        /// From where.
        from: String,
        /// To where.
        path: String,
    },
    /// Copies the value at `from` to `path`.
    Copy {
        /// From where.
        from: String,
        /// To where.
        path: String,
    },
    /// Checks that the value at `path` equals `value`.
    Test {
        /// Where.
        path: String,
        /// The expected value.
        value: Value,
    },
}

impl PatchOp {
    /// The pointer the operation writes (or tests).
    pub fn path(&self) -> &str {
        match self {
            PatchOp::Add { path, .. }
            | PatchOp::Remove { path }
            | PatchOp::Replace { path, .. }
            | PatchOp::Move { path, .. }
            | PatchOp::Copy { path, .. }
            | PatchOp::Test { path, .. } => path,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            PatchOp::Add { .. } => "add",
            PatchOp::Remove { .. } => "remove",
            PatchOp::Replace { .. } => "replace",
            PatchOp::Move { .. } => "move",
            PatchOp::Copy { .. } => "copy",
            PatchOp::Test { .. } => "test",
        }
    }
}

/// A JSON Patch: operations applied in order.
pub type Patch = Vec<PatchOp>;

/// Why a patch could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} ({op} {path}): {reason}")]
pub struct PatchError {
    /// The operation's position in the patch, from 0.
    pub index: usize,
    /// Its name.
    pub op: &'static str,
    /// Its path.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// Splits an RFC 6901 pointer into unescaped tokens; `""` is the whole document.
pub fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "`{pointer}` is not a JSON pointer: it must start with `/`"
        ));
    };
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("`{pointer}` has a `~` not followed by 0 or 1")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Joins tokens into a pointer, escaping `~` and `/`.
pub fn pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .fold(String::new(), |p, t| crate::source::push_segment(&p, t))
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let i: usize = token
        .parse()
        .ok()
        .filter(|_| valid)
        .ok_or_else(|| format!("`{token}` is not an array index"))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("index {i} is past the end of an array of {len}"));
    }
    Ok(i)
}

/// The value at `pointer`, if any.
pub fn get<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut v = doc;
    for t in tokens(pointer).ok()? {
        v = match v {
            Value::Object(m) => m.get(&t)?,
            Value::Array(a) => a.get(array_index(&t, a.len(), false).ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut v = doc;
    for (depth, t) in toks.iter().enumerate() {
        let here = pointer(&toks[..=depth]);
        v = match v {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("`{here}` does not exist"))?,
            Value::Array(a) => {
                let i = array_index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => {
                return Err(format!(
                    "`{here}` is inside a value that is not an object or array"
                ));
            }
        };
    }
    Ok(v)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => return Err("the parent is not an object or array".into()),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err("the whole document cannot be removed".into());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("`{path}` does not exist")),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err("the parent is not an object or array".into()),
    }
}

/// One member-level difference between two documents.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The value at the pointer is replaced (a member whose value differs in kind or is a
    /// scalar or array, or a mapping that becomes or was empty).
    Set(String, Value),
    /// A new member `key` of the mapping at the pointer.
    Insert(String, String, Value),
    /// The member at the pointer goes.
    Delete(String),
}

impl Change {
    /// The pointer of the value that changes.
    pub fn pointer(&self) -> String {
        match self {
            Change::Set(p, _) | Change::Delete(p) => p.clone(),
            Change::Insert(parent, key, _) => crate::source::push_segment(parent, key),
        }
    }
}

/// How `new` differs from `old`, member by member: mappings on both sides (neither empty)
/// are compared key by key, anything else that differs is set whole.
pub fn changes(old: &Value, new: &Value) -> Vec<Change> {
    fn walk(old: &Value, new: &Value, at: &str, out: &mut Vec<Change>) {
        if old == new {
            return;
        }
        match (old, new) {
            (Value::Object(a), Value::Object(b)) if !a.is_empty() && !b.is_empty() => {
                for k in a.keys().filter(|k| !b.contains_key(*k)) {
                    out.push(Change::Delete(crate::source::push_segment(at, k)));
                }
                for (k, vb) in b {
                    match a.get(k) {
                        Some(va) => walk(va, vb, &crate::source::push_segment(at, k), out),
                        None => out.push(Change::Insert(at.to_owned(), k.clone(), vb.clone())),
                    }
                }
            }
            _ => out.push(Change::Set(at.to_owned(), new.clone())),
        }
    }
    let mut out = Vec::new();
    walk(old, new, "", &mut out);
    out
}

/// Applies `patch` to a copy of `doc`.
pub fn apply(doc: &Value, patch: &[PatchOp]) -> Result<Value, PatchError> {
    let mut out = doc.clone();
    for (index, op) in patch.iter().enumerate() {
        let result = match op {
            PatchOp::Add { path, value } => add(&mut out, path, value.clone()),
            PatchOp::Remove { path } => remove(&mut out, path).map(drop),
            PatchOp::Replace { path, value } => match get(&out, path) {
                None => Err(format!("`{path}` does not exist; use `add` to create it")),
                Some(_) if path.is_empty() => {
                    out = value.clone();
                    Ok(())
                }
                Some(_) => remove(&mut out, path).and_then(|_| add(&mut out, path, value.clone())),
            },
            PatchOp::Move { from, path } => {
                if path.starts_with(&format!("{from}/")) {
                    Err("a value cannot be moved into itself".into())
                } else {
                    remove(&mut out, from).and_then(|v| add(&mut out, path, v))
                }
            }
            PatchOp::Copy { from, path } => match get(&out, from) {
                Some(v) => {
                    let v = v.clone();
                    add(&mut out, path, v)
                }
                None => Err(format!("`{from}` does not exist")),
            },
            PatchOp::Test { path, value } => match get(&out, path) {
                Some(v) if v == value => Ok(()),
                Some(v) => Err(format!("the value is {v}, not {value}")),
                None => Err(format!("`{path}` does not exist")),
            },
        };
        result.map_err(|reason| PatchError {
            index,
            op: op.name(),
            path: op.path().to_owned(),
            reason,
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> Result<Value, PatchError> {
        let patch: Patch = serde_json::from_value(patch).unwrap();
        apply(&doc, &patch)
    }

    #[test]
    fn rfc6902_appendix_a_examples() {
        // A.1, A.2, A.3, A.4, A.5, A.6, A.7, A.8 of RFC 6902.
        assert_eq!(
            run(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}])
            )
            .unwrap(),
            json!({"baz": "qux", "foo": "bar"})
        );
        assert_eq!(
            run(
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}])
            )
            .unwrap(),
            json!({"foo": ["bar", "qux", "baz"]})
        );
        assert_eq!(
            run(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}])
            )
            .unwrap(),
            json!({"foo": "bar"})
        );
        assert_eq!(
            run(
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}])
            )
            .unwrap(),
            json!({"foo": ["bar", "baz"]})
        );
        assert_eq!(
            run(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}])
            )
            .unwrap(),
            json!({"baz": "boo", "foo": "bar"})
        );
        assert_eq!(
            run(
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
            )
            .unwrap(),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        );
        assert_eq!(
            run(
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}])
            )
            .unwrap(),
            json!({"foo": ["all", "cows", "eat", "grass"]})
        );
        assert!(run(
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}])
        )
        .is_ok());
        // A.9: a failing test.
        let e = run(
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}]),
        )
        .unwrap_err();
        assert_eq!(e.index, 0);
        // A.12: adding to a nonexistent target.
        let e = run(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
        )
        .unwrap_err();
        assert!(e.reason.contains("/baz` does not exist"), "{e}");
        // A.14: ~ escaping.
        assert!(
            run(
                json!({"/": 9, "~1": 10}),
                json!([{"op": "test", "path": "/~01", "value": 10}])
            )
            .is_ok()
        );
        // A.16: appending with `-`.
        assert_eq!(
            run(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}])
            )
            .unwrap(),
            json!({"foo": ["bar", ["abc", "def"]]})
        );
    }

    #[test]
    fn failures_leave_the_document_and_name_the_operation() {
        let doc = json!({"a": {"b": 1}, "l": [1]});
        for (patch, needle) in [
            (
                json!([{"op": "replace", "path": "/a/c", "value": 2}]),
                "use `add`",
            ),
            (json!([{"op": "remove", "path": "/l/1"}]), "past the end"),
            (
                json!([{"op": "add", "path": "/l/01", "value": 0}]),
                "not an array index",
            ),
            (
                json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
                "into itself",
            ),
            (
                json!([{"op": "add", "path": "a", "value": 0}]),
                "must start with `/`",
            ),
            (
                json!([{"op": "add", "path": "/a/b/c", "value": 0}]),
                "not an object or array",
            ),
        ] {
            let e = run(doc.clone(), patch).unwrap_err();
            assert!(e.to_string().contains(needle), "{e} should say {needle}");
        }
        let e = run(
            doc,
            json!([{"op": "add", "path": "/x", "value": 1}, {"op": "remove", "path": "/y"}]),
        )
        .unwrap_err();
        assert_eq!((e.index, e.op), (1, "remove"));
    }

    #[test]
    fn unknown_operations_and_fields_do_not_parse() {
        assert!(serde_json::from_value::<Patch>(json!([{"op": "merge", "path": "/a"}])).is_err());
        assert!(
            serde_json::from_value::<Patch>(json!([{"op": "remove", "path": "/a", "value": 1}]))
                .is_err()
        );
    }
}
