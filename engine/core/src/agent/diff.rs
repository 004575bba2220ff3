//! Unified diffs of manifest texts, as `diff -u` and `git diff` show them.

/// One line's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// Lines of `text`, without their line ends.
fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The line operations turning `a` into `b`: a longest common subsequence on the part
/// between the common prefix and suffix (manifests are small and rounds change little).
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops = vec![Op::Same; prefix];
    if ma.len().saturating_mul(mb.len()) > 4_000_000 {
        ops.extend(std::iter::repeat_n(Op::Del, ma.len()));
        ops.extend(std::iter::repeat_n(Op::Add, mb.len()));
    } else {
        // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                ops.push(Op::Same);
                i += 1;
                j += 1;
            } else if i < ma.len() && (j == mb.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])
            {
                // Removals before additions, as diff(1) shows them.
                ops.push(Op::Del);
                i += 1;
            } else {
                ops.push(Op::Add);
                j += 1;
            }
        }
    }
    ops.extend(std::iter::repeat_n(Op::Same, suffix));
    ops
}

/// The unified diff (three lines of context) from `old` to `new`, labelled `from` and
/// `to`; empty when the texts have the same lines.
pub fn unified(old: &str, new: &str, from: &str, to: &str) -> String {
    const CONTEXT: usize = 3;
    let (a, b) = (lines(old), lines(new));
    let ops = script(&a, &b);
    if ops.iter().all(|o| *o == Op::Same) {
        return String::new();
    }
    // Positions in a and b before each op.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0usize, 0usize);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    pos.push((i, j));
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut out = format!("--- {from}\n+++ {to}\n");
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (a0, b0) = pos[start];
        let (a1, b1) = pos[end];
        let range = |s: usize, n: usize| match n {
            0 => format!("{s},0"),
            1 => format!("{}", s + 1),
            n => format!("{},{n}", s + 1),
        };
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(a0, a1 - a0),
            range(b0, b1 - b0)
        ));
        for (op, (ia, ib)) in ops[start..end].iter().zip(&pos[start..end]) {
            match op {
                Op::Same => out.push_str(&format!(" {}\n", a[*ia])),
                Op::Del => out.push_str(&format!("-{}\n", a[*ia])),
                Op::Add => out.push_str(&format!("+{}\n", b[*ib])),
            }
        }
    }
    out
}

/// How many lines a unified diff removes and adds.
pub fn counts(diff: &str) -> (usize, usize) {
    let mut del = 0;
    let mut add = 0;
    for l in diff.lines() {
        if l.starts_with("---") || l.starts_with("+++") {
            continue;
        }
        if l.starts_with('-') {
            del += 1;
        } else if l.starts_with('+') {
            add += 1;
        }
    }
    (del, add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_line_gives_one_hunk_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(
            unified(old, new, "a/x", "b/x"),
            "--- a/x\n+++ b/x\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
        assert_eq!(counts(&unified(old, new, "a", "b")), (1, 1));
    }

    #[test]
    fn far_apart_changes_make_two_hunks_and_insertions_count_right() {
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=20)
            .filter(|i| *i != 19)
            .flat_map(|i| {
                [format!("{i}\n")]
                    .into_iter()
                    .chain((i == 2).then(|| "new\n".into()))
            })
            .collect();
        let d = unified(&old, &new, "a", "b");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -1,5 +1,6 @@\n 1\n 2\n+new\n 3\n"), "{d}");
        assert!(d.contains("-19\n"), "{d}");
        assert_eq!(counts(&d), (1, 1));
    }

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }
}
