//! The file's TOML read into a raw section type, naming every mistake serde finds in one
//! run: an unknown key, a value of the wrong type or outside an enum, a missing field.
//! Each mistake is recorded with its place in the file, the entry that holds it is set
//! aside, and the rest is read again (at most once per entry), so `config check` says
//! everything at once instead of one mistake per run.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

/// A TOML-level mistake: where, and what serde said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// The entry set aside, as the config's rules name fields (`partners[0].rate_limit`).
    pub field: String,
    /// Line and column (from 1), when the parser says where.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

/// What was read: `value` with every mistake set aside (what remains may then be
/// defaults); `None` when a mistake belongs to the file as a whole (a top-level field
/// missing), so nothing narrower can be set aside.
pub struct Read<T> {
    pub value: Option<T>,
    pub mistakes: Vec<Mistake>,
    /// Array items set aside (the array's name, the item's index as written).
    removed: Vec<(String, usize)>,
}

impl<T> Read<T> {
    /// A field named in what was read (`partners[1].id`) named as written, where items
    /// before it were set aside (`partners[2].id`).
    pub fn as_written(&self, field: &str) -> String {
        let mut out = String::new();
        let mut rest = field;
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find(']').map(|c| open + c) else {
                break;
            };
            out.push_str(&rest[..open]);
            let Ok(mut index) = rest[open + 1..close].parse::<usize>() else {
                out.push_str(&rest[open..=close]);
                rest = &rest[close + 1..];
                continue;
            };
            let mut gone: Vec<usize> = (self.removed.iter())
                .filter(|(array, _)| *array == out)
                .map(|(_, i)| *i)
                .collect();
            gone.sort_unstable();
            for g in gone {
                if g <= index {
                    index += 1;
                }
            }
            out.push_str(&format!("[{index}]"));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `T` from `text`, or the syntax error that stops the file from being read at all.
pub fn read<T: DeserializeOwned>(text: &str) -> Result<Read<T>, toml::de::Error> {
    let mut document = DeTable::parse(text)?;
    // Named from the file as written: set aside, an array's later items move up.
    let original = document.get_ref().clone();
    let mut mistakes = Vec::new();
    let mut removed = Vec::new();
    loop {
        let error = match T::deserialize(toml::de::Deserializer::from(document.clone())) {
            Ok(value) => {
                return Ok(Read {
                    value: Some(value),
                    mistakes,
                    removed,
                })
            }
            Err(e) => e,
        };
        let at = error.span().map(|s| super::line_column(text, s.start));
        let field = error.span().and_then(|span| {
            let named = deepest(&original, &span)?;
            let here = deepest(document.get_ref(), &span)?;
            remove(document.get_mut(), &here);
            if let Some((Step::Index(i), array)) = named.split_last() {
                removed.push((name(array), *i));
            }
            Some(name(&named))
        });
        let stuck = field.is_none();
        mistakes.push(Mistake {
            field: field.unwrap_or_default(),
            at,
            message: error.message().to_owned(),
        });
        if stuck {
            return Ok(Read {
                value: None,
                mistakes,
                removed,
            });
        }
    }
}

/// One step into the document.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The innermost entry of `root` whose key or value holds `span`. Every entry is
/// searched: a table's own span is only its header, so a parent's span does not hold its
/// children's.
fn deepest(root: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    let mut found = None;
    find_in_table(root, span, &mut Vec::new(), &mut found);
    found
}

fn find_in_table(
    table: &DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<Step>,
    deepest: &mut Option<Vec<Step>>,
) {
    for (k, v) in table.iter() {
        path.push(Step::Key(k.get_ref().to_string()));
        if contains(&k.span(), span) || contains(&v.span(), span) {
            note(path, deepest);
        }
        find_in_value(v.get_ref(), span, path, deepest);
        path.pop();
    }
}

fn find_in_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    path: &mut Vec<Step>,
    deepest: &mut Option<Vec<Step>>,
) {
    match value {
        DeValue::Table(t) => find_in_table(t, span, path, deepest),
        DeValue::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Step::Index(i));
                if contains(&v.span(), span) {
                    note(path, deepest);
                }
                find_in_value(v.get_ref(), span, path, deepest);
                path.pop();
            }
        }
        _ => {}
    }
}

fn note(path: &[Step], deepest: &mut Option<Vec<Step>>) {
    if deepest.as_ref().is_none_or(|d| path.len() > d.len()) {
        *deepest = Some(path.to_vec());
    }
}

fn remove(table: &mut DeTable<'_>, path: &[Step]) {
    let Some((Step::Key(key), rest)) = path.split_first() else {
        return;
    };
    let Some(found) = table.keys().find(|k| k.get_ref() == key).cloned() else {
        return;
    };
    if rest.is_empty() {
        table.remove(&found);
    } else if let Some(v) = table.get_mut(&found) {
        remove_in(v.get_mut(), rest);
    }
}

fn remove_in(value: &mut DeValue<'_>, path: &[Step]) {
    match (value, path.first()) {
        (DeValue::Table(t), Some(Step::Key(_))) => remove(t, path),
        (DeValue::Array(items), Some(Step::Index(i))) => {
            if path.len() == 1 {
                *items = without(items, *i);
            } else if let Some(v) = items.as_mut().get_mut(*i) {
                remove_in(v.get_mut(), &path[1..]);
            }
        }
        _ => {}
    }
}

/// The name the config's rules give the entry: `partners[0].rate_limit`.
fn name(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `items` without its `i`th (a TOML array cannot remove in place).
fn without<'i>(items: &DeArray<'i>, i: usize) -> DeArray<'i> {
    let mut out = DeArray::new();
    for (j, v) in items.iter().enumerate() {
        if j != i {
            out.push(Spanned::new(v.span(), v.get_ref().clone()));
        }
    }
    out
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        server: Server,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Server {
        port: u16,
        mode: Mode,
        names: Vec<Mode>,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Fast,
        Slow,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Item {
        id: String,
        limit: Option<Limit>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Limit {
        #[allow(dead_code)]
        per_second: f64,
    }

    #[test]
    fn every_mistake_is_named_with_its_place() {
        let text = "\
[server]
port = \"eighty\"
mode = \"quick\"
names = [\"fast\", \"sluggish\"]
colour = 1

[[items]]
id = \"a\"
limit = { burst = 3 }

[[items]]
name = \"b\"

[[items]]
id = \"c\"

[[items]]
id = 4
";
        let read = read::<Doc>(text).expect("reads");
        let mistakes = &read.mistakes;
        let doc = (read.value.as_ref())
            .unwrap_or_else(|| panic!("read past its mistakes: {mistakes:#?}"));
        let said: Vec<(&str, (usize, usize))> = mistakes
            .iter()
            .map(|m| (m.field.as_str(), m.at.expect("placed")))
            .collect();
        for expected in [
            ("server.port", (2, 8)),
            ("server.mode", (3, 8)),
            ("server.names[1]", (4, 18)),
            ("server.colour", (5, 1)),
            ("items[0].limit", (9, 9)),
            ("items[1].name", (12, 1)),
            ("items[3].id", (18, 6)),
        ] {
            assert!(said.contains(&expected), "{expected:?} in {mistakes:#?}");
        }
        // Set aside, the rest is read: defaults where a value was wrong.
        assert_eq!(doc.server.port, 0);
        assert_eq!(doc.server.names, vec![Mode::Fast]);
        let ids: Vec<&str> = doc.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"], "{mistakes:#?}");
        assert!(doc.items[0].limit.is_none());
        // What was read names `c` items[1]; as written it is items[2].
        assert_eq!(read.as_written("items[1].id"), "items[2].id");
        assert_eq!(read.as_written("items[0].id"), "items[0].id");
        assert_eq!(read.as_written("server.names[0]"), "server.names[0]");
        let missing = mistakes
            .iter()
            .filter(|m| m.message.contains("missing field"))
            .count();
        assert!(missing >= 1, "{mistakes:#?}");
    }

    #[test]
    fn a_clean_file_has_no_mistakes_and_a_syntax_error_stops() {
        let clean = read::<Doc>("[server]\nport = 80\n").expect("reads");
        assert!(clean.mistakes.is_empty() && clean.value.is_some());
        assert!(read::<Doc>("[server\nport = 80\n").is_err());
    }
}
