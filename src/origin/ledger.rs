//! What the origin knows: the repository's newest publication (its manifest and data),
//! each holder's temporary permits by issue day, and the journal of the authority's
//! writes read back from the chain (src/publish/claim.rs). Owned by the writer thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use time::OffsetDateTime;

use crate::day::Day;
use crate::document::DocumentKind;
use crate::issuance::{self, Actor, JournalEntry};
use crate::key_files::HashKey;
use crate::publish::bucket::Bucket;
use crate::publish::{self, claim, Commit, PublishError, PublishOptions, Target};
use crate::snapshot::{DocKey, Manifest, Record, RepoData};
use crate::temp_permit::{PermitId, Reason};

/// The keys the origin writes with.
pub struct Keys {
    /// Signs the repository's manifests and objects.
    pub publisher: SigningKey,
    /// Signs temporary permits.
    pub issuer: SigningKey,
    pub hash_key: HashKey,
}

/// A temporary permit the origin issued, as its journal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub id: PermitId,
    /// The holder's travel permit's key.
    pub holder: DocKey,
    pub travel_permit_masked: String,
    /// Keyed hash of what was asked: number, name, reason.
    pub request: String,
    pub reason: Reason,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub issued_by: Actor,
    pub revoked: Option<(OffsetDateTime, Actor)>,
}

/// Which issued permits to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Issued on this day (Beijing).
    pub issued_on: Option<Day>,
    pub office: Option<String>,
    pub holder: Option<DocKey>,
}

pub struct Ledger {
    repo: PathBuf,
    /// The repository of record when `repo` is a local copy of a bucket's.
    bucket: Option<Arc<Bucket>>,
    manifest: Manifest,
    data: RepoData,
    /// Issue days (Beijing) of each person's temporary permits, as published.
    issued: HashMap<u64, Vec<Day>>,
    permits: HashMap<PermitId, Permit>,
    /// Permit ids in the order they were issued.
    order: Vec<PermitId>,
}

impl Ledger {
    /// Reads the repository's newest publication (completing one whose publisher was
    /// killed before installing its manifest) and the journal of every link of its chain;
    /// with a bucket, after pulling what the local copy lacks.
    pub fn open(
        repo: &Path,
        bucket: Option<Arc<Bucket>>,
        keys: &Keys,
    ) -> Result<Ledger, PublishError> {
        if let Some(b) = &bucket {
            b.pull(repo, &keys.publisher.verifying_key())?;
        }
        let (manifest, data) = publish::load_current(repo, &keys.publisher, &keys.hash_key)?;
        let mut issued: HashMap<u64, Vec<Day>> = HashMap::new();
        for r in data.records() {
            if r.kind == DocumentKind::TemporaryPermit {
                issued
                    .entry(r.person)
                    .or_default()
                    .push(issuance::issue_day(&r));
            }
        }
        let mut ledger = Ledger {
            repo: repo.to_owned(),
            bucket,
            manifest,
            data,
            issued,
            permits: HashMap::new(),
            order: Vec::new(),
        };
        for link in ledger.journal(keys)? {
            for entry in link.journal {
                ledger.absorb(entry);
            }
        }
        Ok(ledger)
    }

    /// Every link of the chain up to the installed version, in order.
    fn journal(&self, keys: &Keys) -> Result<Vec<claim::Link>, PublishError> {
        let dir = self.repo.join(claim::CHAIN_DIR);
        let mut links = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(links),
            Err(source) => return Err(PublishError::Read { path: dir, source }),
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(from) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(link) = claim::successor(&self.repo, from, &keys.publisher.verifying_key())?
            {
                if link.version <= self.manifest.version {
                    links.push(link);
                }
            }
        }
        links.sort_by_key(|l| l.version);
        Ok(links)
    }

    fn absorb(&mut self, entry: JournalEntry) {
        match entry {
            JournalEntry::Issue {
                permit,
                holder,
                travel_permit_masked,
                request,
                reason,
                issued_at,
                expires_at,
                by,
            } => {
                let (Some(id), Some(holder)) = (PermitId::parse(&permit), parse_key(&holder))
                else {
                    return;
                };
                if self
                    .permits
                    .insert(
                        id,
                        Permit {
                            id,
                            holder,
                            travel_permit_masked,
                            request,
                            reason,
                            issued_at,
                            expires_at,
                            issued_by: by,
                            revoked: None,
                        },
                    )
                    .is_none()
                {
                    self.order.push(id);
                }
            }
            JournalEntry::Revoke { permit, at, by } => {
                if let Some(p) = PermitId::parse(&permit).and_then(|id| self.permits.get_mut(&id)) {
                    p.revoked = Some((at, by));
                }
            }
        }
    }

    /// Whether another publisher has published since this ledger was read.
    pub fn is_behind(&self, keys: &Keys) -> Result<bool, PublishError> {
        let (version, trusted) = (self.manifest.version, keys.publisher.verifying_key());
        Ok(match &self.bucket {
            Some(b) => b.successor(version, &trusted)?,
            None => claim::successor(&self.repo, version, &trusted)?,
        }
        .is_some())
    }

    pub fn bucket(&self) -> Option<&Arc<Bucket>> {
        self.bucket.as_ref()
    }

    fn target(&self) -> Target<'_> {
        Target {
            dir: &self.repo,
            bucket: self.bucket.as_deref(),
        }
    }

    pub fn data(&self) -> &RepoData {
        &self.data
    }

    pub fn version(&self) -> u64 {
        self.manifest.version
    }

    /// Temporary permits issued to `person` in the calendar month (Beijing) of `at`.
    pub fn issued_in_month(&self, person: u64, at: OffsetDateTime) -> usize {
        let month = Day::in_beijing(at).month();
        self.issued
            .get(&person)
            .map_or(0, |days| days.iter().filter(|d| d.month() == month).count())
    }

    pub fn permit(&self, id: &PermitId) -> Option<&Permit> {
        self.permits.get(id)
    }

    /// Every permit the origin revoked, with its expiry: the revocation list's content.
    pub fn revoked(&self) -> impl Iterator<Item = (PermitId, OffsetDateTime)> + '_ {
        self.permits
            .values()
            .filter(|p| p.revoked.is_some())
            .map(|p| (p.id, p.expires_at))
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The permits the origin issued that `filter` selects, oldest first.
    pub fn list(&self, filter: &Filter) -> Vec<&Permit> {
        self.order
            .iter()
            .filter_map(|id| self.permits.get(id))
            .filter(|p| {
                filter
                    .issued_on
                    .is_none_or(|d| Day::in_beijing(p.issued_at) == d)
                    && filter
                        .office
                        .as_ref()
                        .is_none_or(|o| &p.issued_by.office == o)
                    && filter.holder.is_none_or(|h| p.holder == h)
            })
            .collect()
    }

    /// When the newest manifest stops being fresh.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.manifest.expires_at
    }

    /// Signs the newest manifest again, fresh for `opts.expires_in` (the same data);
    /// `Taken` when another publisher was first.
    pub fn refresh(&mut self, keys: &Keys, opts: &PublishOptions) -> Result<u64, PublishError> {
        self.manifest = publish::refresh(self.target(), &self.manifest, &keys.publisher, opts)?;
        Ok(self.manifest.version)
    }

    /// Publishes `changes` with `journal` as the next version; `Taken` when another
    /// publisher was first (the ledger is then behind: open it again).
    pub fn publish(
        &mut self,
        changes: Vec<(DocKey, Option<Record>)>,
        journal: Vec<JournalEntry>,
        keys: &Keys,
        opts: &PublishOptions,
        max_deltas: usize,
    ) -> Result<u64, PublishError> {
        let (_, manifest) = publish::commit(
            self.target(),
            self.manifest.clone(),
            &self.data,
            Commit {
                changes: changes.clone(),
                journal: journal.clone(),
            },
            &keys.publisher,
            &keys.hash_key,
            opts,
            max_deltas,
        )?;
        // Permits new in this version (issued, or issued and revoked at once) count
        // towards their holder's month.
        for (key, record) in &changes {
            if let Some(r) = record
                .filter(|r| r.kind == DocumentKind::TemporaryPermit && self.data.get(key).is_none())
            {
                self.issued
                    .entry(r.person)
                    .or_default()
                    .push(issuance::issue_day(&r));
            }
        }
        self.data.apply(manifest.data_version(), &changes);
        self.manifest = manifest;
        for entry in journal {
            self.absorb(entry);
        }
        Ok(self.manifest.version)
    }
}

fn parse_key(hex_text: &str) -> Option<DocKey> {
    let mut k = [0u8; 16];
    hex::decode_to_slice(hex_text, &mut k).ok()?;
    Some(DocKey(k))
}

/// A key as the journal writes it.
pub fn key_hex(key: &DocKey) -> String {
    hex::encode(key.0)
}
