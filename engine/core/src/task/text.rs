//! Words of a request: lower-cased tokens split into sentences and clauses, and a matcher
//! that finds vocabulary phrases in them, longest first.

/// Tokens that end a sentence.
const SENTENCE_ENDS: [&str; 4] = [".", "!", "?", ";"];
/// Words that start a new clause inside a sentence.
const CLAUSE_BREAKS: [&str; 6] = [",", "but", "whereas", "while", "though", "although"];

/// Splits text into lower-case tokens: words (apostrophes dropped, so "don't" is "dont"),
/// numbers (with a decimal point), and the punctuation the parser reads (`, . ; ! ? ( ) / %`
/// and comparisons).
pub fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if c == '.' && prev_digit && next_digit {
            word.push('.');
        } else if c == '\'' || c == '\u{2019}' {
            // Apostrophes join: "don't" and "dont" read the same.
        } else {
            flush(&mut word, &mut out);
            let token = match c {
                '≥' => Some(">="),
                '≤' => Some("<="),
                '%' => Some("%"),
                ',' => Some(","),
                '.' => Some("."),
                '!' => Some("!"),
                '?' => Some("?"),
                ';' => Some(";"),
                '(' => Some("("),
                ')' => Some(")"),
                '/' => Some("/"),
                _ => None,
            };
            if let Some(t) = token {
                out.push(t.to_owned());
            } else if c == '>' || c == '<' {
                let eq = chars.get(i + 1) == Some(&'=');
                out.push(format!("{c}{}", if eq { "=" } else { "" }));
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The request as sentences of tokens; sentence-ending punctuation is dropped.
pub fn sentences(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for token in tokenize(text) {
        if SENTENCE_ENDS.contains(&token.as_str()) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(token);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The clause (a range of token indices) of a sentence that holds token `i`.
pub fn clause_of(words: &[String], i: usize) -> std::ops::Range<usize> {
    let is_break = |w: &String| CLAUSE_BREAKS.contains(&w.as_str());
    let start = words[..i.min(words.len())]
        .iter()
        .rposition(is_break)
        .map_or(0, |p| p + 1);
    let end = words
        .iter()
        .skip(i + 1)
        .position(is_break)
        .map_or(words.len(), |p| i + 1 + p);
    start..end
}

/// A vocabulary phrase found in a sentence: tokens `start..end` mean `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit<T> {
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
    /// The canonical value of the phrase.
    pub value: T,
}

/// Whether `phrase` occurs at token `at`; returns its end. The last word may carry a plural
/// "s" or "es".
pub fn match_at(words: &[String], at: usize, phrase: &[String]) -> Option<usize> {
    if phrase.is_empty() || at + phrase.len() > words.len() {
        return None;
    }
    let last = phrase.len() - 1;
    for (k, p) in phrase.iter().enumerate() {
        let w = &words[at + k];
        let same = w == p
            || (k == last
                && p.len() >= 3
                && p.chars().all(char::is_alphabetic)
                && (w.strip_suffix('s') == Some(p.as_str())
                    || w.strip_suffix("es") == Some(p.as_str())));
        if !same {
            return None;
        }
    }
    Some(at + phrase.len())
}

/// Every occurrence of the phrases in `words`, without overlaps: at each position the longest
/// phrase wins.
pub fn find<T: Clone>(words: &[String], phrases: &[(Vec<String>, T)]) -> Vec<Hit<T>> {
    let mut hits = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let best = phrases
            .iter()
            .filter_map(|(p, v)| match_at(words, i, p).map(|end| (end, v)))
            .max_by_key(|(end, _)| *end);
        if let Some((end, v)) = best {
            hits.push(Hit {
                start: i,
                end,
                value: v.clone(),
            });
            i = end;
        } else {
            i += 1;
        }
    }
    hits
}

/// Whether any of the phrases occurs in `words`.
pub fn contains(words: &[String], phrases: &[Vec<String>]) -> bool {
    (0..words.len()).any(|i| phrases.iter().any(|p| match_at(words, i, p).is_some()))
}

/// Every occurrence of the phrases, as `start..end` ranges.
pub fn find_plain(words: &[String], phrases: &[Vec<String>]) -> Vec<std::ops::Range<usize>> {
    let tagged: Vec<(Vec<String>, ())> = phrases.iter().map(|p| (p.clone(), ())).collect();
    find(words, &tagged)
        .into_iter()
        .map(|h| h.start..h.end)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_join_apostrophes_and_keep_numbers() {
        assert_eq!(
            tokenize("I don't want X-rays at 80.5% (or ≥0.9)."),
            [
                "i", "dont", "want", "x", "rays", "at", "80.5", "%", "(", "or", ">=", "0.9", ")",
                "."
            ]
        );
    }

    #[test]
    fn longest_phrase_wins_and_plurals_match() {
        let words = tokenize("actinic keratosis, moles and benign keratosis");
        let phrases = vec![
            (tokenize("actinic keratosis"), "ak"),
            (tokenize("keratosis"), "k"),
            (tokenize("benign keratosis"), "bkl"),
            (tokenize("mole"), "nv"),
        ];
        let got: Vec<&str> = find(&words, &phrases).iter().map(|h| h.value).collect();
        assert_eq!(got, ["ak", "nv", "bkl"]);
    }
}
