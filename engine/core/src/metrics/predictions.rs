//! Reading prediction files (CSV) for the binary and multiclass metrics, refusing anything
//! that would make a figure wrong, with a message that points at the line and column.
//!
//! Binary: columns `id,label,prob` in any order, `label` 0 or 1, `prob` in [0, 1];
//! optionally `patient` (cases of one patient are resampled together) and an attribute
//! column of 0/1 values. Multiclass: `id,label` and one probability column per class
//! (named after the class), `label` holding a class name; optionally `patient`.

use std::collections::HashMap;
use std::path::Path;

use crate::diag::{Diagnostic, Mark};

use super::csv::{self, Field, Record};
use super::error::InputError;

/// The largest predictions file read (1 GiB): far more than any evaluation set.
const MAX_BYTES: u64 = 1 << 30;

/// An attribute of each case (e.g. a chest drain) for the confound analysis: either 0/1
/// labels or the probability another model gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The column's name.
    pub name: String,
    /// The attribute's value or probability, from 0 to 1.
    pub values: Vec<f64>,
    /// Whether each case has it (value at least 0.5).
    pub present: Vec<bool>,
}

/// Binary predictions, one entry per case in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryPredictions {
    /// Case ids.
    pub ids: Vec<String>,
    /// Labels: true for 1 (positive).
    pub positive: Vec<bool>,
    /// Predicted probabilities of the positive class.
    pub probs: Vec<f64>,
    /// Patient ids, when the file has a `patient` column.
    pub patients: Option<Vec<String>>,
    /// The attribute column asked for.
    pub attribute: Option<Attribute>,
}

/// Multiclass predictions, one entry per case in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct MulticlassPredictions {
    /// Case ids.
    pub ids: Vec<String>,
    /// Class names, in column order.
    pub classes: Vec<String>,
    /// The class of each case, as an index into `classes`.
    pub labels: Vec<u32>,
    /// `probs[c][i]`: the probability of class `c` for case `i`.
    pub probs: Vec<Vec<f64>>,
    /// Patient ids, when the file has a `patient` column.
    pub patients: Option<Vec<String>>,
}

/// The header and rows of a predictions file.
struct Table<'a> {
    path: &'a Path,
    header: Vec<Field>,
    rows: Vec<Record>,
}

impl<'a> Table<'a> {
    fn read(path: &'a Path, expected: &str) -> Result<Table<'a>, InputError> {
        let file_error = |message: String, hint: &str| -> InputError {
            Diagnostic::new(path, Mark::FILE, message).hint(hint).into()
        };
        let size = std::fs::metadata(path)
            .map_err(|e| file_error(format!("cannot read the file: {e}"), "check the path"))?
            .len();
        if size > MAX_BYTES {
            return Err(file_error(
                format!(
                    "the file is {size} bytes, more than the 1 GiB a predictions file may have"
                ),
                "split the evaluation, or check that this is the right file",
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| file_error(format!("cannot read the file: {e}"), "check the path"))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            file_error(
                format!(
                    "the file is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                "save the predictions as a UTF-8 CSV file",
            )
        })?;
        let mut records = csv::parse(path, &text)?.into_iter();
        let Some(header) = records.next() else {
            return Err(file_error(
                "the file is empty".into(),
                &format!("write a header line `{expected}` and one line per case"),
            ));
        };
        let rows: Vec<Record> = records.collect();
        if rows.is_empty() {
            return Err(Diagnostic::new(
                path,
                Mark::new(header.line, 1),
                "no cases after the header",
            )
            .hint(format!(
                "write one line per case under the header `{expected}`"
            ))
            .into());
        }
        let mut seen: HashMap<&str, &Field> = HashMap::new();
        for f in &header.fields {
            if f.text.is_empty() {
                return Err(Diagnostic::new(path, f.mark, "a column has no name")
                    .hint(format!("name every column; expected `{expected}`"))
                    .into());
            }
            if let Some(first) = seen.insert(f.text.as_str(), f) {
                return Err(Diagnostic::new(
                    path,
                    f.mark,
                    format!(
                        "column `{}` appears twice (first at column {})",
                        f.text, first.mark.col
                    ),
                )
                .hint("give each column a distinct name")
                .into());
            }
        }
        for r in &rows {
            if r.fields.len() != header.fields.len() {
                return Err(Diagnostic::new(
                    path,
                    Mark::new(r.line, 1),
                    format!("{} fields, but the header has {}", r.fields.len(), header.fields.len()),
                )
                .hint("give every line one value per column, separated by commas; quote values that contain commas")
                .into());
            }
        }
        Ok(Table {
            path,
            header: header.fields,
            rows,
        })
    }

    /// The index of a column, or an error naming it and the columns found.
    fn column(&self, name: &str, expected: &str) -> Result<usize, InputError> {
        self.find(name).ok_or_else(|| {
            let found: Vec<&str> = self.header.iter().map(|f| f.text.as_str()).collect();
            Diagnostic::new(
                self.path,
                Mark::new(self.header[0].mark.line, 1),
                format!(
                    "missing column `{name}` (the header has: {})",
                    found.join(", ")
                ),
            )
            .hint(format!("the header must name the columns `{expected}`"))
            .into()
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|f| f.text == name)
    }

    /// An error at one cell.
    fn cell_error(&self, row: &Record, col: usize, message: String, hint: &str) -> InputError {
        Diagnostic::new(
            self.path,
            row.fields[col].mark,
            format!("column `{}`: {message}", self.header[col].text),
        )
        .hint(hint)
        .into()
    }

    /// The ids, checked to be present and distinct.
    fn ids(&self, col: usize) -> Result<Vec<String>, InputError> {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for r in &self.rows {
            let id = r.fields[col].text.as_str();
            if id.is_empty() {
                return Err(self.cell_error(
                    r,
                    col,
                    "the id is empty".into(),
                    "give every case an id",
                ));
            }
            if let Some(line) = first.insert(id, r.line) {
                return Err(self.cell_error(
                    r,
                    col,
                    format!("id `{id}` appears again (first on line {line})"),
                    "give each case one line; cases of one patient share the `patient` column, not the id",
                ));
            }
        }
        Ok(self
            .rows
            .iter()
            .map(|r| r.fields[col].text.clone())
            .collect())
    }

    /// The non-empty values of a text column such as `patient`.
    fn texts(&self, col: usize, hint: &str) -> Result<Vec<String>, InputError> {
        self.rows
            .iter()
            .map(|r| {
                let t = &r.fields[col].text;
                if t.is_empty() {
                    Err(self.cell_error(r, col, "the value is empty".into(), hint))
                } else {
                    Ok(t.clone())
                }
            })
            .collect()
    }

    /// A column of probabilities: numbers in [0, 1].
    fn probabilities(&self, col: usize) -> Result<Vec<f64>, InputError> {
        let hint = "write each probability as a number from 0 to 1, e.g. 0.73";
        self.rows
            .iter()
            .map(|r| {
                let t = r.fields[col].text.as_str();
                let v: f64 = t.parse().map_err(|_| {
                    let what = if t.is_empty() { "the value is empty".to_owned() } else { format!("`{t}` is not a number") };
                    self.cell_error(r, col, what, hint)
                })?;
                if v.is_nan() {
                    return Err(self.cell_error(r, col, format!("`{t}` is not a number (NaN)"), "give the model's probability for every case; drop cases it did not score"));
                }
                if !(0.0..=1.0).contains(&v) {
                    return Err(self.cell_error(r, col, format!("{t} is outside [0, 1]"), "give probabilities, not logits or percentages (apply a sigmoid or softmax, or divide by 100)"));
                }
                Ok(v)
            })
            .collect()
    }

    /// A column of 0/1 values.
    fn flags(&self, col: usize, hint: &str) -> Result<Vec<bool>, InputError> {
        self.rows
            .iter()
            .map(|r| match r.fields[col].text.as_str() {
                "1" => Ok(true),
                "0" => Ok(false),
                t => Err(self.cell_error(r, col, format!("`{t}` is not 0 or 1"), hint)),
            })
            .collect()
    }
}

const BINARY_HEADER: &str = "id,label,prob";

/// Reads binary predictions; `attribute` names an extra column to read (0/1, or a probability).
pub fn read_binary(path: &Path, attribute: Option<&str>) -> Result<BinaryPredictions, InputError> {
    let t = Table::read(path, BINARY_HEADER)?;
    let id = t.column("id", BINARY_HEADER)?;
    let label = t.column("label", BINARY_HEADER)?;
    let prob = t.column("prob", BINARY_HEADER)?;
    let ids = t.ids(id)?;
    let positive = t.flags(label, "binary labels are 1 (positive) or 0 (negative)")?;
    let probs = t.probabilities(prob)?;
    let patients = match t.find("patient") {
        Some(c) => Some(t.texts(
            c,
            "give every case its patient id, or drop the `patient` column",
        )?),
        None => None,
    };
    let attribute = match attribute {
        Some(name) => {
            let c = t.column(name, &format!("{BINARY_HEADER},{name}"))?;
            let values = t.probabilities(c)?;
            let present = values.iter().map(|v| *v >= 0.5).collect();
            Some(Attribute {
                name: name.to_owned(),
                values,
                present,
            })
        }
        None => None,
    };
    let npos = positive.iter().filter(|&&p| p).count();
    if npos == 0 || npos == positive.len() {
        let which = if npos == 0 { 0 } else { 1 };
        return Err(Diagnostic::new(
            path,
            Mark::FILE,
            format!("every label is {which}: AUC, sensitivity and specificity are undefined with one class"),
        )
        .hint("evaluate on a set with both positive (1) and negative (0) cases")
        .into());
    }
    Ok(BinaryPredictions {
        ids,
        positive,
        probs,
        patients,
        attribute,
    })
}

const MULTICLASS_HEADER: &str = "id,label,CLASS1,CLASS2,...";

/// Reads multiclass predictions: every column other than `id`, `label` and `patient` is
/// the probability of the class it is named after.
pub fn read_multiclass(path: &Path) -> Result<MulticlassPredictions, InputError> {
    let t = Table::read(path, MULTICLASS_HEADER)?;
    let id = t.column("id", MULTICLASS_HEADER)?;
    let label = t.column("label", MULTICLASS_HEADER)?;
    let patient = t.find("patient");
    let class_cols: Vec<usize> = (0..t.header.len())
        .filter(|&c| c != id && c != label && Some(c) != patient)
        .collect();
    if class_cols.len() < 2 {
        return Err(Diagnostic::new(
            path,
            Mark::new(t.header[0].mark.line, 1),
            format!("{} probability column(s); multiclass predictions need one per class, at least two", class_cols.len()),
        )
        .hint(format!("write the header as `{MULTICLASS_HEADER}`, one column per class; for two classes use --task binary"))
        .into());
    }
    let classes: Vec<String> = class_cols
        .iter()
        .map(|&c| t.header[c].text.clone())
        .collect();
    let index: HashMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let ids = t.ids(id)?;
    let labels = t
        .rows
        .iter()
        .map(|r| {
            let l = r.fields[label].text.as_str();
            index.get(l).copied().ok_or_else(|| {
                t.cell_error(
                    r,
                    label,
                    format!("`{l}` is not one of the classes ({})", classes.join(", ")),
                    "a label must be the name of one of the probability columns",
                )
            })
        })
        .collect::<Result<Vec<u32>, InputError>>()?;
    let probs = class_cols
        .iter()
        .map(|&c| t.probabilities(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut counts = vec![0usize; classes.len()];
    for &l in &labels {
        counts[l as usize] += 1;
    }
    if let Some(c) = counts.iter().position(|&n| n == labels.len()) {
        return Err(Diagnostic::new(
            path,
            Mark::FILE,
            format!(
                "every label is `{}`: AUC is undefined with one class",
                classes[c]
            ),
        )
        .hint("evaluate on a set with cases of every class")
        .into());
    }
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(Diagnostic::new(
            path,
            t.header[class_cols[c]].mark,
            format!(
                "class `{}` never occurs in column `label`: its one-vs-rest AUC is undefined",
                classes[c]
            ),
        )
        .hint("evaluate on a set with cases of every class, or drop the class's column")
        .into());
    }
    let patients = match patient {
        Some(c) => Some(t.texts(
            c,
            "give every case its patient id, or drop the `patient` column",
        )?),
        None => None,
    };
    Ok(MulticlassPredictions {
        ids,
        classes,
        labels,
        probs,
        patients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        std::fs::write(&p, content).unwrap();
        (dir, p)
    }

    fn binary_err(content: &str) -> String {
        let (_d, p) = write(content);
        read_binary(&p, None).unwrap_err().to_string()
    }

    #[test]
    fn reads_a_binary_file_with_patients() {
        let (_d, p) =
            write("id,patient,label,prob,drain\na,p1,1,0.9,1\nb,p1,0,0.2,0\nc,p2,0,0.4,0\n");
        let b = read_binary(&p, Some("drain")).unwrap();
        assert_eq!(b.positive, [true, false, false]);
        assert_eq!(b.probs, [0.9, 0.2, 0.4]);
        assert_eq!(b.patients.unwrap(), ["p1", "p1", "p2"]);
        assert_eq!(b.attribute.unwrap().present, [true, false, false]);
    }

    #[test]
    fn binary_problems_point_at_the_cell() {
        let e = binary_err("id,label,prob\na,1,0.5\nb,0,abc\n");
        assert!(
            e.contains("p.csv:3:5: column `prob`: `abc` is not a number"),
            "{e}"
        );
        let e = binary_err("id,label,prob\na,1,NaN\nb,0,0.1\n");
        assert!(
            e.contains(":2:5: column `prob`: `NaN` is not a number (NaN)"),
            "{e}"
        );
        let e = binary_err("id,label,prob\na,1,1.5\nb,0,0.1\n");
        assert!(e.contains("outside [0, 1]"), "{e}");
        let e = binary_err("id,label,prob\na,2,0.5\n");
        assert!(e.contains(":2:3: column `label`: `2` is not 0 or 1"), "{e}");
        let e = binary_err("id,label,p\na,1,0.5\n");
        assert!(
            e.contains(":1:1: missing column `prob` (the header has: id, label, p)"),
            "{e}"
        );
        let e = binary_err("id,label,prob\na,1,0.5\nb,1,0.2\n");
        assert!(e.contains("every label is 1"), "{e}");
        let e = binary_err("");
        assert!(e.contains("p.csv: the file is empty"), "{e}");
        let e = binary_err("id,label,prob\n");
        assert!(e.contains("no cases after the header"), "{e}");
        let e = binary_err("id,label,prob\na,1,0.5\na,0,0.2\n");
        assert!(e.contains("id `a` appears again (first on line 2)"), "{e}");
        let e = binary_err("id,label,prob\na,1\n");
        assert!(e.contains(":2:1: 2 fields, but the header has 3"), "{e}");
    }

    #[test]
    fn reads_a_multiclass_file() {
        let (_d, p) = write(
            "id,label,cat,dog,fox\n1,dog,0.2,0.7,0.1\n2,fox,0.1,0.1,0.8\n3,cat,0.5,0.3,0.2\n",
        );
        let m = read_multiclass(&p).unwrap();
        assert_eq!(m.classes, ["cat", "dog", "fox"]);
        assert_eq!(m.labels, [1, 2, 0]);
        assert_eq!(m.probs[1], [0.7, 0.1, 0.3]);
    }

    #[test]
    fn multiclass_problems() {
        let (_d, p) = write("id,label,cat,dog\n1,cow,0.2,0.8\n2,cat,0.5,0.5\n");
        let e = read_multiclass(&p).unwrap_err().to_string();
        assert!(
            e.contains(":2:3: column `label`: `cow` is not one of the classes (cat, dog)"),
            "{e}"
        );
        let (_d, p) = write("id,label,cat,dog,fox\n1,dog,0.2,0.7,0.1\n2,cat,0.5,0.3,0.2\n");
        let e = read_multiclass(&p).unwrap_err().to_string();
        assert!(e.contains("class `fox` never occurs"), "{e}");
        let (_d, p) = write("id,label,cat\n1,cat,0.2\n");
        let e = read_multiclass(&p).unwrap_err().to_string();
        assert!(e.contains("1 probability column(s)"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the bytes, reading gives predictions or an error, never a panic.
        #[test]
        fn never_panics_on_any_file(
            body in proptest::collection::vec(
                proptest::sample::select(vec!["1", "0", "0.5", "x", ",", "\n", "\"", "\r\n", "nan", "2", "cat", "dog", " ", "-1", "\u{feff}"]),
                0..40,
            )
        ) {
            let header = ["id,label,prob,patient\n", "id,label,cat,dog\n", ""];
            for h in header {
                let (_d, p) = write(&format!("{h}{}", body.concat()));
                let _ = read_binary(&p, Some("patient"));
                let _ = read_multiclass(&p);
            }
        }
    }
}
