//! The one way configs are edited, by the tests and by the load tool's scenarios: as TOML
//! tables. Each edit names a key by its dotted path (or a partner by its id, wherever it
//! is: the partner registry or the config) and sets, merges or removes a value; a path
//! that is not there is an error, rather than a text replacement that silently matched
//! nothing.
//!
//! The `try_` functions return the error (the load tool reports it); their plain twins
//! panic with it (a failed test).

use std::path::{Path, PathBuf};

use toml::{Table, Value};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0} is not a table")]
    NotATable(String),
    #[error("the config has no {0}")]
    Missing(String),
    #[error("the config has no partner {0}")]
    NoPartner(String),
    #[error("{what} is not TOML: {source}")]
    Toml {
        what: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A config and the partner registry it names (`partners_file`), as TOML.
pub struct Tables {
    pub config: Table,
    pub registry: Option<Table>,
}

pub type Edit = Box<dyn FnOnce(&mut Tables) -> Result<(), EditError> + Send>;

fn parse(what: &str, text: &str) -> Result<Table, EditError> {
    toml::from_str(text).map_err(|source| EditError::Toml {
        what: what.to_owned(),
        source,
    })
}

/// A TOML value written as TOML, for literals: `value("{ per_second = 2, burst = 3 }")`.
pub fn value(text: &str) -> Value {
    let t: Table = toml::from_str(&format!("v = {text}")).expect("a TOML value");
    t.get("v").cloned().expect("value")
}

/// The table at `path` (dotted), created if absent.
fn table<'a>(root: &'a mut Table, path: &str) -> Result<&'a mut Table, EditError> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .try_fold(root, |t, key| {
            t.entry(key)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .ok_or_else(|| EditError::NotATable(key.to_owned()))
        })
}

/// Sets `path` (`section.key`) to `v`.
pub fn set(path: &str, v: impl Into<Value>) -> Edit {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let (section, key, v) = (section.to_owned(), key.to_owned(), v.into());
    Box::new(move |t| {
        table(&mut t.config, &section)?.insert(key, v);
        Ok(())
    })
}

/// Every key of `toml_text` (a TOML document) set into the table at `section`.
pub fn merge(section: &str, toml_text: &str) -> Edit {
    let (section, text) = (section.to_owned(), toml_text.to_owned());
    Box::new(move |t| {
        let add = parse(&format!("what to merge into [{section}]"), &text)?;
        table(&mut t.config, &section)?.extend(add);
        Ok(())
    })
}

/// Removes `path` (a key or a whole section), which must be there.
pub fn remove(path: &str) -> Edit {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let (section, key, path) = (section.to_owned(), key.to_owned(), path.to_owned());
    Box::new(move |t| {
        table(&mut t.config, &section)?
            .remove(&key)
            .map(drop)
            .ok_or(EditError::Missing(path))
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
        f(find_partner(t, &id).ok_or(EditError::NoPartner(id))?);
        Ok(())
    })
}

/// Appends a `[[partners]]` entry, to the registry when there is one: `id` with the keys
/// of `toml_text`.
pub fn add_partner(id: &str, toml_text: &str) -> Edit {
    let (id, text) = (id.to_owned(), toml_text.to_owned());
    Box::new(move |t| {
        let mut add = parse(&format!("partner {id}"), &text)?;
        add.insert("id".into(), Value::String(id));
        let partners = t
            .registry
            .as_mut()
            .unwrap_or(&mut t.config)
            .entry("partners")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| EditError::NotATable("partners".into()))?;
        partners.push(Value::Table(add));
        Ok(())
    })
}

/// The config `text` and its registry (TOML text) with `edits` applied, as TOML.
pub fn try_apply_with_registry(
    text: &str,
    registry: Option<&str>,
    edits: Vec<Edit>,
) -> Result<(String, Option<String>), EditError> {
    let mut t = Tables {
        config: parse("the config", text)?,
        registry: registry.map(|r| parse("the registry", r)).transpose()?,
    };
    for e in edits {
        e(&mut t)?;
    }
    let out = |t: &Table| toml::to_string(t).expect("a table serialises");
    Ok((out(&t.config), t.registry.as_ref().map(out)))
}

/// [`try_apply_with_registry`], for tests.
pub fn apply_with_registry(
    text: &str,
    registry: Option<&str>,
    edits: Vec<Edit>,
) -> (String, Option<String>) {
    try_apply_with_registry(text, registry, edits).expect("config edits")
}

/// The config `text` with `edits` applied, as TOML; partners added go into it.
pub fn apply(text: &str, edits: Vec<Edit>) -> String {
    apply_with_registry(text, None, edits).0
}

fn read(path: &Path) -> Result<String, EditError> {
    std::fs::read_to_string(path).map_err(|source| EditError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_atomic(path: &Path, text: &str) -> Result<(), EditError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| EditError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The registry the config at `path` names, resolved as the gateway resolves it.
pub fn try_registry_path(path: &Path) -> Result<Option<PathBuf>, EditError> {
    let config = parse("the config", &read(path)?)?;
    Ok(config
        .get("partners_file")
        .and_then(Value::as_str)
        .map(|file| path.parent().unwrap_or(Path::new(".")).join(file)))
}

/// [`try_registry_path`], for tests.
pub fn registry_path(path: &Path) -> Option<PathBuf> {
    try_registry_path(path).expect("config")
}

/// Edits the config file at `path` and its partner registry in place, each atomically (a
/// watcher never sees half a file), the registry first.
pub fn try_edit_file(path: &Path, edits: Vec<Edit>) -> Result<(), EditError> {
    let text = read(path)?;
    let registry = try_registry_path(path)?;
    let registry_text = registry.as_deref().map(read).transpose()?;
    let (config, registry_out) = try_apply_with_registry(&text, registry_text.as_deref(), edits)?;
    if let (Some(r), Some(out)) = (&registry, registry_out) {
        if registry_text.as_deref() != Some(out.as_str()) {
            write_atomic(r, &out)?;
        }
    }
    write_atomic(path, &config)
}

/// [`try_edit_file`], for tests.
pub fn edit_file(path: &Path, edits: Vec<Edit>) {
    try_edit_file(path, edits).expect("config edits")
}

/// A copy of the config at `source` with `edits` applied, written to `dest`, with a copy
/// of its partner registry of its own beside it (`<dest's stem>-partners.toml`), which
/// the edits change: a gateway started on it shares no file another one writes. `dest`
/// belongs in `source`'s directory, where the config's relative paths still resolve.
pub fn write_copy(source: &Path, dest: &Path, mut edits: Vec<Edit>) -> Result<(), EditError> {
    let text = read(source)?;
    let registry_text = try_registry_path(source)?
        .as_deref()
        .map(read)
        .transpose()?;
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let registry_name = format!("{stem}-partners.toml");
    let registry_copy = dest.with_file_name(&registry_name);
    if registry_text.is_some() {
        // Resolved from the copy's own directory, where the registry's copy is.
        edits.push(set("partners_file", registry_name));
    }
    let (config, registry) = try_apply_with_registry(&text, registry_text.as_deref(), edits)?;
    if let Some(r) = registry {
        write_atomic(&registry_copy, &r)?;
    }
    write_atomic(dest, &config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "partners_file = \"p.toml\"\n[server]\nlisten = \"a\"\n";
    const REGISTRY: &str = "[[partners]]\nid = \"bank\"\nscopes = [\"link\"]\n";

    #[test]
    fn edits_name_what_is_missing() {
        let err = try_apply_with_registry(CONFIG, Some(REGISTRY), vec![remove("server.port")])
            .expect_err("no such key");
        assert_eq!(err.to_string(), "the config has no server.port");
        let err = try_apply_with_registry(CONFIG, None, vec![partner("bank", |_| {})])
            .expect_err("no registry given");
        assert_eq!(err.to_string(), "the config has no partner bank");
        let err = try_apply_with_registry(CONFIG, None, vec![merge("server", "x =")])
            .expect_err("bad TOML");
        assert!(err
            .to_string()
            .starts_with("what to merge into [server] is not TOML"));
    }

    #[test]
    fn partners_are_edited_where_they_are() {
        let (config, registry) = apply_with_registry(
            CONFIG,
            Some(REGISTRY),
            vec![
                set("server.listen", "b"),
                partner("bank", |p| {
                    p.insert("rate_limit".into(), value("{ per_second = 2, burst = 3 }"));
                }),
                add_partner("gate", "scopes = []"),
            ],
        );
        assert!(config.contains("listen = \"b\""), "{config}");
        let registry = registry.expect("registry");
        assert!(registry.contains("per_second = 2"), "{registry}");
        assert!(registry.contains("id = \"gate\""), "{registry}");
    }

    #[test]
    fn a_copy_has_a_registry_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("gateway.toml");
        std::fs::write(&source, CONFIG).expect("write");
        std::fs::write(dir.path().join("p.toml"), REGISTRY).expect("write");
        let dest = dir.path().join("copy.toml");
        write_copy(
            &source,
            &dest,
            vec![partner("bank", |p| {
                p.remove("scopes");
            })],
        )
        .expect("copy");
        let copy = try_registry_path(&dest).expect("read").expect("a registry");
        assert_eq!(copy, dir.path().join("copy-partners.toml"));
        assert!(!std::fs::read_to_string(&copy)
            .expect("read")
            .contains("scopes"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("p.toml")).expect("read"),
            REGISTRY
        );
    }
}
