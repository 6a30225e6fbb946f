//! Test configs edited as TOML tables: each edit names a key by its dotted path (or a
//! partner by its id, wherever it is: the partner registry or the config) and sets,
//! merges or removes a value; a path that is not there fails the test, rather than a text
//! replacement that silently matched nothing.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// A config and the partner registry it names (`partners_file`), as TOML.
pub struct Tables {
    pub config: Table,
    pub registry: Option<Table>,
}

pub type Edit = Box<dyn FnOnce(&mut Tables) + Send>;

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
    Box::new(move |t| {
        table(&mut t.config, &section).insert(key, v);
    })
}

/// Every key of `toml` (a TOML document) set into the table at `section`.
pub fn merge(section: &str, toml_text: &str) -> Edit {
    let add: Table = toml::from_str(toml_text).expect("TOML to merge");
    let section = section.to_owned();
    Box::new(move |t| table(&mut t.config, &section).extend(add))
}

/// Removes `path` (a key or a whole section), which must be there.
pub fn remove(path: &str) -> Edit {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let (section, key) = (section.to_owned(), key.to_owned());
    Box::new(move |t| {
        assert!(
            table(&mut t.config, &section).remove(&key).is_some(),
            "config has no {section}.{key}"
        );
    })
}

/// The `[[partners]]` entry with this id, in the registry or in the config.
fn find_partner<'a>(t: &'a mut Tables, id: &str) -> Option<&'a mut Table> {
    t.registry
        .iter_mut()
        .chain(std::iter::once(&mut t.config))
        .filter_map(|root| root.get_mut("partners").and_then(Value::as_array_mut))
        .flat_map(|ps| ps.iter_mut().filter_map(Value::as_table_mut))
        .find(|p| p.get("id").and_then(Value::as_str) == Some(id))
}

/// Edits the `[[partners]]` entry with this id.
pub fn partner(id: &str, f: impl FnOnce(&mut Table) + Send + 'static) -> Edit {
    let id = id.to_owned();
    Box::new(move |t| {
        let p = find_partner(t, &id).unwrap_or_else(|| panic!("config has no partner {id}"));
        f(p)
    })
}

/// Appends a `[[partners]]` entry, to the registry when there is one: `id` with the keys
/// of `toml_text`.
pub fn add_partner(id: &str, toml_text: &str) -> Edit {
    let mut add: Table = toml::from_str(toml_text).expect("TOML to add");
    add.insert("id".into(), Value::String(id.to_owned()));
    Box::new(move |t| {
        t.registry
            .as_mut()
            .unwrap_or(&mut t.config)
            .entry("partners")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("partners is an array")
            .push(Value::Table(add));
    })
}

/// The config `text` with `edits` applied, as TOML; partners added go into it.
pub fn apply(text: &str, edits: Vec<Edit>) -> String {
    apply_with_registry(text, None, edits).0
}

/// The config `text` and its registry (TOML text) with `edits` applied, as TOML.
pub fn apply_with_registry(
    text: &str,
    registry: Option<&str>,
    edits: Vec<Edit>,
) -> (String, Option<String>) {
    let mut t = Tables {
        config: toml::from_str(text).expect("config is TOML"),
        registry: registry.map(|r| toml::from_str(r).expect("registry is TOML")),
    };
    for e in edits {
        e(&mut t);
    }
    let out = |t: &Table| toml::to_string(t).expect("TOML");
    (out(&t.config), t.registry.as_ref().map(out))
}

/// The registry the config at `path` names, resolved as the gateway resolves it.
pub fn registry_path(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).expect("read config");
    let config: Table = toml::from_str(&text).expect("config is TOML");
    let file = config.get("partners_file")?.as_str()?;
    Some(path.parent().unwrap_or(Path::new(".")).join(file))
}

/// Edits the config file at `path` and its partner registry in place, each atomically (a
/// watcher never sees half a file), the registry first.
pub fn edit_file(path: &Path, edits: Vec<Edit>) {
    let text = std::fs::read_to_string(path).expect("read config");
    let registry = registry_path(path);
    let registry_text = registry
        .as_ref()
        .map(|r| std::fs::read_to_string(r).unwrap_or_default());
    let (config, registry_out) = apply_with_registry(&text, registry_text.as_deref(), edits);
    if let (Some(r), Some(out)) = (&registry, registry_out) {
        if registry_text.as_deref() != Some(out.as_str()) {
            write_atomic(r, &out);
        }
    }
    write_atomic(path, &config);
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
