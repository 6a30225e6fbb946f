//! Test configs edited as TOML tables: each edit names a key by its dotted path (or a
//! partner by its id) and sets, merges or removes a value; a path that is not there fails
//! the test, rather than a text replacement that silently matched nothing.

use std::path::Path;

use toml::{Table, Value};

pub type Edit = Box<dyn FnOnce(&mut Table) + Send>;

/// A TOML value written as TOML: `value("{ per_second = 2, burst = 3 }")`.
pub fn value(text: &str) -> Value {
    let t: Table = toml::from_str(&format!("v = {text}")).expect("TOML value");
    t.get("v").cloned().expect("value")
}

/// The table at `path` (dotted), created if absent.
fn table<'a>(root: &'a mut Table, path: &str) -> &'a mut Table {
    path.split('.')
        .filter(|p| !p.is_empty())
        .fold(root, |t, key| {
            t.entry(key)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key} is not a table"))
        })
}

/// Sets `path` (`section.key`) to `v`.
pub fn set(path: &str, v: impl Into<Value>) -> Edit {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let (section, key, v) = (section.to_owned(), key.to_owned(), v.into());
    Box::new(move |root| {
        table(root, &section).insert(key, v);
    })
}

/// Every key of `toml` (a TOML document) set into the table at `section`.
pub fn merge(section: &str, toml_text: &str) -> Edit {
    let add: Table = toml::from_str(toml_text).expect("TOML to merge");
    let section = section.to_owned();
    Box::new(move |root| table(root, &section).extend(add))
}

/// Removes `path` (a key or a whole section), which must be there.
pub fn remove(path: &str) -> Edit {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let (section, key) = (section.to_owned(), key.to_owned());
    Box::new(move |root| {
        assert!(
            table(root, &section).remove(&key).is_some(),
            "config has no {section}.{key}"
        );
    })
}

/// Edits the `[[partners]]` entry with this id.
pub fn partner(id: &str, f: impl FnOnce(&mut Table) + Send + 'static) -> Edit {
    let id = id.to_owned();
    Box::new(move |root| {
        let p = root
            .get_mut("partners")
            .and_then(Value::as_array_mut)
            .and_then(|ps| {
                ps.iter_mut()
                    .filter_map(Value::as_table_mut)
                    .find(|p| p.get("id").and_then(Value::as_str) == Some(id.as_str()))
            })
            .unwrap_or_else(|| panic!("config has no partner {id}"));
        f(p)
    })
}

/// Appends a `[[partners]]` entry: `id` with the keys of `toml_text`.
pub fn add_partner(id: &str, toml_text: &str) -> Edit {
    let mut add: Table = toml::from_str(toml_text).expect("TOML to add");
    add.insert("id".into(), Value::String(id.to_owned()));
    Box::new(move |root| {
        root.entry("partners")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("partners is an array")
            .push(Value::Table(add));
    })
}

/// `text` (a config) with `edits` applied, as TOML.
pub fn apply(text: &str, edits: Vec<Edit>) -> String {
    let mut root: Table = toml::from_str(text).expect("config is TOML");
    for e in edits {
        e(&mut root);
    }
    toml::to_string(&root).expect("config to TOML")
}

/// Edits the config file at `path` in place, atomically (a watcher never sees half a
/// file).
pub fn edit_file(path: &Path, edits: Vec<Edit>) {
    let text = std::fs::read_to_string(path).expect("read config");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, apply(&text, edits)).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}
