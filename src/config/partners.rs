//! `[[partners]]`, in the config and in the partner registry (`partners_file`): who may
//! call, with what scopes, rate and weight, and the names people read. The registry is a
//! file of its own, written by `permitgate partners enrol` and by renewals (src/partner_ca.rs)
//! and reloaded with the config when it changes; a partner may be in one of the two, not both.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Problems;
use crate::partner::{valid_partner_id, DisplayName, IssuedCertificate, Partner, Scope};
use crate::rate_limit::RateLimit;

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    pub id: String,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RawRateLimit>,
    /// The partner's weight in fair shares; default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The organisation's name as people read it (the paper receipt prints it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name_zh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name_en: Option<String>,
    /// The client certificates issued to it (`partners enrol`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<IssuedCertificate>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The registry file: `[[partners]]` tables only.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub partners: Vec<RawPartner>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the partner registry {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the partner registry {} line {line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot write the partner registry {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock the partner registry ({})", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Registry {
    /// The registry at `path`; an absent file is an empty registry.
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(source) => {
                return Err(RegistryError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| RegistryError::Parse {
            path: path.to_owned(),
            line: e.span().map_or(0, |s| super::line_column(&text, s.start).0),
            message: e.message().to_owned(),
        })
    }

    /// Reads the registry, lets `change` edit it, and writes it back, holding the
    /// registry's lock throughout: `partners enrol` and a gateway recording a renewal
    /// never lose each other's entry. Nothing is written when `change` fails.
    ///
    /// The lock is a file of its own beside the registry (`<registry>.lock`, an advisory
    /// lock on it): the registry itself is replaced by a rename, which a lock on it would
    /// not survive.
    pub fn update<T, E: From<RegistryError>>(
        path: &Path,
        change: impl FnOnce(&mut Registry) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_err = |source| RegistryError::Lock {
            path: PathBuf::from(&lock_path),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_err)?;
        lock.lock().map_err(lock_err)?;
        let mut registry = Registry::load(path)?;
        let out = change(&mut registry)?;
        registry.save(path)?;
        // Dropping the file releases the lock.
        drop(lock);
        Ok(out)
    }

    /// Writes the registry whole (a temporary file renamed over it): a gateway reloading
    /// meanwhile reads the old one or the new one.
    fn save(&self, path: &Path) -> Result<(), RegistryError> {
        let write_err = |source| RegistryError::Write {
            path: path.to_owned(),
            source,
        };
        let body = toml::to_string_pretty(self).map_err(|e| write_err(std::io::Error::other(e)))?;
        let text = format!(
            "# The partner registry: written by `permitgate partners enrol`, and by gateways\n\
             # recording renewals; gateways reload it when it changes (docs/partners.md).\n\n{body}"
        );
        crate::snapshot::write_atomic(path, text.as_bytes()).map_err(write_err)
    }
}

/// The partners of the config (`partners[i]`) and of the registry (`partners_file[i]`),
/// every rule broken named with its field.
pub(super) fn partners(
    inline: Vec<RawPartner>,
    registry: Vec<RawPartner>,
    problems: &mut Problems,
) -> Vec<Partner> {
    let mut seen = HashSet::new();
    let inline = inline
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("partners[{i}]"), p));
    let registry = registry
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("partners_file[{i}]"), p));
    inline
        .chain(registry)
        .map(|(at, p)| {
            let field = |name: &str| format!("{at}.{name}");
            problems.check(
                valid_partner_id(&p.id),
                field("id"),
                "must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
            );
            problems.check(seen.insert(p.id.clone()), field("id"), "appears twice");
            let rate_limit = p.rate_limit.map(|r| {
                problems.check(
                    r.per_second > 0.0 && r.per_second <= 1e9,
                    field("rate_limit.per_second"),
                    "must be above 0 and at most 1e9",
                );
                // Unwritten, a second's worth (at least 1): a default is never a mistake.
                let burst = r.burst.unwrap_or((r.per_second.ceil() as u32).max(1));
                problems.check(burst > 0, field("rate_limit.burst"), "must be at least 1");
                RateLimit {
                    per_second: r.per_second,
                    burst,
                }
            });
            let weight = p.weight.unwrap_or(1);
            problems.check(
                (1..=1000).contains(&weight),
                field("weight"),
                "must be from 1 to 1000",
            );
            use crate::partner::{DISPLAY_NAME_EN_MAX, DISPLAY_NAME_ZH_MAX};
            for (name, value, max) in [
                ("display_name_zh", &p.display_name_zh, DISPLAY_NAME_ZH_MAX),
                ("display_name_en", &p.display_name_en, DISPLAY_NAME_EN_MAX),
            ] {
                if let Some(v) = value {
                    problems.check_name(v, field(name));
                    // Signed into every receipt and printed in its QR code.
                    problems.check(
                        v.chars().count() <= max,
                        field(name),
                        &format!("must be at most {max} characters (it is signed into receipts)"),
                    );
                }
            }
            Partner {
                id: p.id,
                scopes: p.scopes.into_iter().collect(),
                rate_limit,
                weight,
                display_name: DisplayName {
                    zh: p.display_name_zh,
                    en: p.display_name_en,
                },
                certificates: p.certificates,
            }
        })
        .collect()
}
