//! Publishing changes: a JSONL file of change events in, a signed delta (or, when the
//! delta chain has grown long, a compacted full snapshot) and a new manifest out.
//!
//! Events (one per line; schema in docs/replication.md):
//! `{"op":"upsert","person":"P1","number":"H12345678","status":"valid","valid_until":"2031-01-01"}`
//! adds or replaces a document (linking it to the person),
//! `{"op":"status","number":"H12345678","status":"lost"}` changes a published document's
//! status, `{"op":"remove","number":"H12345678"}` withdraws one.
//! The two temporary-permit events of earlier releases (`temp_permit_issue`,
//! `temp_permit_revoke`) are refused with the reason: the origin (src/origin) issues and
//! revokes, under its policy, and publishes through [`commit`] itself.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    for_each_line, meta, next_version, write_manifest, write_object, write_snapshot, PublishError,
    PublishOptions, PublishReport,
};
use crate::day::Day;
use crate::document::{DocumentKind, DocumentNo};
use crate::key_files::HashKey;
use crate::snapshot::{
    self, encode_delta, load_repo, DocKey, FileKind, ManifestDelta, Record, RecordStatus, RepoData,
    NO_RENEWAL,
};

/// Default longest delta chain; the publication that would exceed it writes a full
/// snapshot instead, so a new follower never replays more than this many deltas.
pub const DEFAULT_MAX_DELTAS: usize = 32;

/// One line of a change file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChangeEvent {
    Upsert {
        person: String,
        number: String,
        status: RecordStatus,
        valid_until: String,
    },
    Status {
        number: String,
        status: RecordStatus,
    },
    Remove {
        number: String,
    },
    /// A temporary permit was issued to the holder of a published travel permit.
    TempPermitIssue {
        permit_id: String,
        travel_permit: String,
        /// When it was issued (events written before this field: seven days before expiry).
        #[serde(
            default,
            with = "time::serde::rfc3339::option",
            skip_serializing_if = "Option::is_none"
        )]
        issued_at: Option<OffsetDateTime>,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// A temporary permit was withdrawn; gates verifying online answer `revoked`.
    TempPermitRevoke {
        permit_id: String,
    },
}

/// Why a change file cannot issue or revoke a temporary permit.
const ORIGIN_ONLY: &str = "temporary permits are issued and revoked by the origin \
     (`permitgate temp-permit issue|revoke` or the authority API), which applies the policy \
     to every desk at once; a change file cannot";

/// Reads change events against the current data, keyed by document.
fn read_changes(
    path: &Path,
    hash_key: &HashKey,
    data: &RepoData,
) -> Result<Vec<(DocKey, Option<Record>)>, PublishError> {
    let mut changes: HashMap<DocKey, (usize, Option<Record>)> = HashMap::new();
    for_each_line("changes", path, |line_no, line, err| {
        let event: ChangeEvent = serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
        let parse = |n: &str| {
            DocumentNo::parse(n).map_err(|e| err(format!("number breaks rule {}: {e}", e.rule())))
        };
        let published = |key: &DocKey| {
            data.get(key)
                .ok_or_else(|| err("number is not in the published data".into()))
        };
        let (key, change) = match event {
            ChangeEvent::Upsert {
                person,
                number,
                status,
                valid_until,
            } => {
                let n = parse(&number)?;
                let valid_until = Day::parse(&valid_until).ok_or_else(|| {
                    err("valid_until must be a date YYYY-MM-DD from 1970 on".into())
                })?;
                let key = DocKey::of(hash_key, n.canonical());
                let rec = Record {
                    key,
                    person: DocKey::person_id(hash_key, &person),
                    valid_until: valid_until.0,
                    status,
                    kind: n.kind(),
                    region: n.region(),
                    renewal: n.renewal().unwrap_or(NO_RENEWAL),
                };
                (key, Some(rec))
            }
            ChangeEvent::Status { number, status } => {
                let key = DocKey::of(hash_key, parse(&number)?.canonical());
                let mut rec = published(&key)?;
                rec.status = status;
                (key, Some(rec))
            }
            ChangeEvent::Remove { number } => {
                let key = DocKey::of(hash_key, parse(&number)?.canonical());
                published(&key)?;
                (key, None)
            }
            ChangeEvent::TempPermitIssue { .. } | ChangeEvent::TempPermitRevoke { .. } => {
                return Err(err(ORIGIN_ONLY.into()));
            }
        };
        if let Some((first, _)) = changes.insert(key, (line_no, change)) {
            return Err(err(format!(
                "the same document is changed on line {first}; one change per document per publication"
            )));
        }
        Ok(())
    })?;
    if changes.is_empty() {
        return Err(PublishError::Empty);
    }
    Ok(changes.into_iter().map(|(k, (_, c))| (k, c)).collect())
}

/// Publishes `events` onto the repo's current data as version + 1.
pub fn publish_changes(
    events: &Path,
    repo: &Path,
    signing_key: &SigningKey,
    hash_key: &HashKey,
    opts: &PublishOptions,
    max_deltas: usize,
) -> Result<PublishReport, PublishError> {
    publish_onto(repo, signing_key, hash_key, opts, max_deltas, |data| {
        read_changes(events, hash_key, data)
    })
}

/// Publishes the difference between a full export and the repo's current data as a delta
/// (or a compacted snapshot past `max_deltas`). `NoChanges` when they are equal.
pub fn publish_diff(
    input: &Path,
    repo: &Path,
    signing_key: &SigningKey,
    hash_key: &HashKey,
    opts: &PublishOptions,
    max_deltas: usize,
) -> Result<PublishReport, PublishError> {
    let new = super::read_export(input, hash_key)?;
    publish_onto(repo, signing_key, hash_key, opts, max_deltas, |data| {
        diff(new, data)
    })
}

/// Publishes the changes `changes_of` finds in the repo's current data.
fn publish_onto(
    repo: &Path,
    signing_key: &SigningKey,
    hash_key: &HashKey,
    opts: &PublishOptions,
    max_deltas: usize,
    changes_of: impl FnOnce(&RepoData) -> Result<Vec<(DocKey, Option<Record>)>, PublishError>,
) -> Result<PublishReport, PublishError> {
    let (manifest, data) = load_current(repo, signing_key, hash_key)?;
    let changes = changes_of(&data)?;
    commit(
        super::Target::dir(repo),
        manifest,
        &data,
        Commit {
            changes,
            journal: Vec::new(),
        },
        signing_key,
        hash_key,
        opts,
        max_deltas,
    )
    .map(|(report, _)| report)
}

/// What changes from `data` to `new` (the authority's full export).
fn diff(
    mut new: Vec<Record>,
    data: &RepoData,
) -> Result<Vec<(DocKey, Option<Record>)>, PublishError> {
    new.sort_unstable_by_key(|r| r.key);
    if new.windows(2).any(|w| w[0].key == w[1].key) {
        return Err(PublishError::DuplicateNumber);
    }
    // Temporary permits are not part of the authority's export: never diffed away.
    let old: Vec<Record> = data
        .records()
        .into_iter()
        .filter(|r| r.kind != DocumentKind::TemporaryPermit)
        .collect();
    let mut changes = Vec::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) if a.key == b.key => {
                if a != b {
                    changes.push((b.key, Some(**b)));
                }
                o.next();
                n.next();
            }
            (Some(a), Some(b)) if a.key < b.key => {
                changes.push((a.key, None));
                o.next();
            }
            (Some(a), None) => {
                changes.push((a.key, None));
                o.next();
            }
            (_, Some(b)) => {
                changes.push((b.key, Some(**b)));
                n.next();
            }
        }
    }
    if changes.is_empty() {
        return Err(PublishError::NoChanges);
    }
    Ok(changes)
}

/// Temporary-permit records of the repo's current data (as `manifest`, already verified,
/// names it), to carry into a full publication:
/// the authority's export does not hold them, and dropping a revocation would make a
/// withdrawn permit valid again. A repo built with another hashing key holds none that
/// still apply.
pub(super) fn temp_permits_in(
    manifest: &crate::snapshot::Manifest,
    repo: &Path,
    signing_key: &SigningKey,
    hash_key: &HashKey,
) -> Result<Vec<Record>, PublishError> {
    let existing = |e| PublishError::ExistingManifest(repo.to_owned(), e);
    let trusted = [signing_key.verifying_key()];
    // Read as it streams past (the base may be larger than memory): only temporary
    // permits are kept, and only once each file's signature has verified.
    let mut permits: HashMap<DocKey, Record> = HashMap::new();
    let read = |hash: &str, kind: FileKind, permits: &mut HashMap<DocKey, Record>| {
        let mut seen = Vec::new();
        let header = snapshot::scan(
            &snapshot::object_path(repo, hash),
            kind,
            Some(hash),
            &trusted,
            |key, record| match record {
                Some(r) if r.kind == DocumentKind::TemporaryPermit => seen.push((key, Some(r))),
                // A delta's removal, or another record under that key.
                _ if kind == FileKind::Delta => seen.push((key, None)),
                _ => {}
            },
        )
        .map_err(existing)?;
        for (key, record) in seen {
            match record {
                Some(r) => permits.insert(key, r),
                None => permits.remove(&key),
            };
        }
        Ok::<_, PublishError>(header)
    };
    let base = read(&manifest.snapshot.hash, FileKind::Snapshot, &mut permits)?;
    if base.meta.hash_key_id != hash_key.id() {
        return Ok(Vec::new());
    }
    for d in &manifest.deltas {
        read(&d.hash, FileKind::Delta, &mut permits)?;
    }
    Ok(permits.into_values().collect())
}

/// The repository's newest publication (completing one whose publisher was killed between
/// its claim and its manifest) and its data.
pub fn load_current(
    repo: &Path,
    signing_key: &SigningKey,
    hash_key: &HashKey,
) -> Result<(crate::snapshot::Manifest, RepoData), PublishError> {
    super::claim::settle(repo, &signing_key.verifying_key())?;
    let current = load_repo(repo, &[signing_key.verifying_key()], Some(hash_key))
        .map_err(|e| PublishError::ExistingManifest(repo.to_owned(), e))?;
    Ok((current.manifest.manifest.clone(), current.into_data()))
}

/// What one publication changes, and the journal of the authority's writes it records.
pub struct Commit {
    pub changes: Vec<(DocKey, Option<Record>)>,
    pub journal: Vec<crate::issuance::JournalEntry>,
}

/// Writes the changes onto the current data (`manifest` and `data`, as published): a
/// delta, or a compacted snapshot when the chain is at `max_deltas`; then claims the next
/// place in the chain and installs the new manifest, which it returns. `Taken` when
/// another publisher published onto `manifest` first.
#[allow(clippy::too_many_arguments)]
pub fn commit(
    target: super::Target<'_>,
    mut manifest: crate::snapshot::Manifest,
    data: &RepoData,
    commit: Commit,
    signing_key: &SigningKey,
    hash_key: &HashKey,
    opts: &PublishOptions,
    max_deltas: usize,
) -> Result<(PublishReport, crate::snapshot::Manifest), PublishError> {
    let Commit { changes, journal } = commit;
    let previous = manifest.clone();
    let from_version = manifest.data_version();
    let version = next_version(opts.version, manifest.version.max(from_version))?;
    manifest.version = version;
    manifest.published_at = opts.now;
    manifest.expires_at = opts.now + opts.expires_in;

    let report = if manifest.deltas.len() < max_deltas {
        let entries = changes.len() as u64;
        let bytes = encode_delta(
            changes,
            from_version,
            meta(version, hash_key, opts),
            signing_key,
        )?;
        let hash = write_object(target.dir, &bytes)?;
        manifest.deltas.push(ManifestDelta {
            hash: hash.clone(),
            size: bytes.len() as u64,
            from_version,
            version,
            entries,
        });
        PublishReport {
            version,
            documents: entries,
            persons: 0,
            hash,
            size: bytes.len() as u64,
            compacted: false,
        }
    } else {
        // Compact: today's data plus these changes as one new snapshot.
        let changed: HashMap<DocKey, Option<Record>> = changes.into_iter().collect();
        let mut records: Vec<Record> = data
            .records()
            .into_iter()
            .filter(|r| !changed.contains_key(&r.key))
            .collect();
        records.extend(changed.values().flatten().copied());
        let (snapshot, persons) =
            write_snapshot(target.dir, records, version, hash_key, signing_key, opts)?;
        let report = PublishReport::of_snapshot(version, &snapshot, persons, true);
        manifest.snapshot = snapshot;
        manifest.deltas.clear();
        report
    };
    write_manifest(target, Some(&previous), &manifest, signing_key, journal)?;
    Ok((report, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_files::generate_signing_key;
    use crate::publish::publish;
    use time::{Duration, OffsetDateTime};

    const EXPORT: &str = concat!(
        r#"{"person":"p1","documents":[{"number":"H12345678","status":"valid","valid_until":"2099-01-01"},{"number":"810000199001011230","status":"valid","valid_until":"2099-01-01"}]}"#,
        "\n",
        r#"{"person":"p2","documents":[{"number":"01234567","status":"valid","valid_until":"2099-01-01"}]}"#,
        "\n"
    );

    fn opts() -> PublishOptions {
        PublishOptions {
            version: None,
            expires_in: Duration::hours(24),
            now: OffsetDateTime::now_utc(),
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        sk: SigningKey,
        hk: HashKey,
    }

    impl Fixture {
        fn new() -> Fixture {
            let f = Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
                sk: generate_signing_key(),
                hk: HashKey::generate(),
            };
            std::fs::write(f.export(), EXPORT).expect("write");
            f.publish_full().expect("full");
            f
        }

        fn export(&self) -> std::path::PathBuf {
            self.dir.path().join("export.jsonl")
        }

        /// A full publication of `export.jsonl`.
        fn publish_full(&self) -> Result<PublishReport, PublishError> {
            publish(&self.export(), &self.repo(), &self.sk, &self.hk, &opts())
        }

        fn repo(&self) -> std::path::PathBuf {
            self.dir.path().join("repo")
        }

        fn change(&self, lines: &str, max_deltas: usize) -> Result<PublishReport, PublishError> {
            let p = self.dir.path().join("changes.jsonl");
            std::fs::write(&p, lines).expect("write");
            publish_changes(&p, &self.repo(), &self.sk, &self.hk, &opts(), max_deltas)
        }

        fn state(&self) -> RepoData {
            load_repo(&self.repo(), &[self.sk.verifying_key()], Some(&self.hk))
                .expect("load")
                .into_data()
        }

        fn get(&self, state: &RepoData, number: &str) -> Option<Record> {
            state.get(&DocKey::of(&self.hk, number))
        }
    }

    #[test]
    fn deltas_chain_and_apply() {
        let f = Fixture::new();
        let r = f
            .change(
                concat!(
                    r#"{"op":"status","number":"H12345678","status":"lost"}"#, "\n",
                    r#"{"op":"upsert","person":"p2","number":"830000200002290023","status":"valid","valid_until":"2099-01-01"}"#, "\n",
                    r#"{"op":"remove","number":"810000199001011230"}"#, "\n",
                ),
                DEFAULT_MAX_DELTAS,
            )
            .expect("delta");
        assert_eq!((r.version, r.documents, r.compacted), (2, 3, false));
        let r = f
            .change(
                r#"{"op":"status","number":"01234567","status":"revoked"}"#,
                DEFAULT_MAX_DELTAS,
            )
            .expect("second delta");
        assert_eq!(r.version, 3);

        let state = f.state();
        assert_eq!(state.version(), 3);
        assert_eq!(
            f.get(&state, "H12345678").map(|r| r.status),
            Some(RecordStatus::Lost)
        );
        assert!(f.get(&state, "810000199001011230").is_none(), "removed");
        let tw = f.get(&state, "01234567").expect("present");
        let new_rp = f.get(&state, "830000200002290023").expect("added");
        assert_eq!(tw.status, RecordStatus::Revoked);
        assert_eq!(tw.person, new_rp.person, "upsert links by person reference");
    }

    #[test]
    fn a_long_chain_is_compacted_into_a_snapshot_with_the_same_answers() {
        let f = Fixture::new();
        f.change(r#"{"op":"status","number":"H12345678","status":"lost"}"#, 2)
            .expect("1");
        f.change(r#"{"op":"remove","number":"810000199001011230"}"#, 2)
            .expect("2");
        let r = f
            .change(
                r#"{"op":"status","number":"01234567","status":"damaged"}"#,
                2,
            )
            .expect("3");
        assert!(r.compacted);
        assert_eq!((r.version, r.documents), (4, 2));
        let repo = load_repo(&f.repo(), &[f.sk.verifying_key()], Some(&f.hk)).expect("load");
        assert!(repo.deltas.is_empty());
        assert_eq!(repo.snapshot.header().meta.version, 4);
        let state = f.state();
        assert_eq!(
            f.get(&state, "H12345678").map(|r| r.status),
            Some(RecordStatus::Lost)
        );
        assert!(f.get(&state, "810000199001011230").is_none());
        assert_eq!(
            f.get(&state, "01234567").map(|r| r.status),
            Some(RecordStatus::Damaged)
        );
    }

    #[test]
    fn a_new_export_is_published_as_its_difference() {
        let f = Fixture::new();
        let export = f.dir.path().join("export2.jsonl");
        std::fs::write(
            &export,
            concat!(
                r#"{"person":"p1","documents":[{"number":"H12345678","status":"lost","valid_until":"2099-01-01"}]}"#, "\n",
                r#"{"person":"p2","documents":[{"number":"01234567","status":"valid","valid_until":"2099-01-01"},{"number":"830000200002290023","status":"valid","valid_until":"2099-01-01"}]}"#, "\n",
            ),
        )
        .expect("write");
        let r = publish_diff(
            &export,
            &f.repo(),
            &f.sk,
            &f.hk,
            &opts(),
            DEFAULT_MAX_DELTAS,
        )
        .expect("diff");
        // H12345678 changed, 810000199001011230 gone, 830000200002290023 new; 01234567 same.
        assert_eq!((r.version, r.documents, r.compacted), (2, 3, false));
        let state = f.state();
        assert_eq!(
            f.get(&state, "H12345678").map(|r| r.status),
            Some(RecordStatus::Lost)
        );
        assert!(f.get(&state, "810000199001011230").is_none());
        assert_eq!(
            f.get(&state, "830000200002290023").map(|r| r.person),
            f.get(&state, "01234567").map(|r| r.person)
        );
        // The same export again changes nothing.
        assert!(matches!(
            publish_diff(
                &export,
                &f.repo(),
                &f.sk,
                &f.hk,
                &opts(),
                DEFAULT_MAX_DELTAS
            ),
            Err(PublishError::NoChanges)
        ));
        assert_eq!(f.state().records().len(), 3);
    }

    #[test]
    fn bad_change_files_are_refused_with_the_line() {
        let f = Fixture::new();
        let cases = [
            (
                r#"{"op":"status","number":"H99999999","status":"lost"}"#,
                "not in the published data",
            ),
            (
                r#"{"op":"remove","number":"M12345678"}"#,
                "not in the published data",
            ),
            (
                r#"{"op":"status","number":"H1234","status":"lost"}"#,
                "length",
            ),
            (r#"{"op":"rename","number":"H12345678"}"#, "unknown variant"),
            (
                r#"{"op":"status","number":"H12345678","status":"lost","why":1}"#,
                "unknown field",
            ),
            (
                concat!(
                    r#"{"op":"status","number":"H12345678","status":"lost"}"#,
                    "\n",
                    r#"{"op":"remove","number":"H12345678"}"#
                ),
                "line 1",
            ),
        ];
        for (lines, want) in cases {
            let e = f
                .change(lines, DEFAULT_MAX_DELTAS)
                .expect_err(want)
                .to_string();
            assert!(e.contains(want) && e.contains("changes line"), "{e}");
            assert!(!e.contains("export"), "{e}");
            assert!(!e.contains("H99999999") && !e.contains("M12345678"), "{e}");
        }
        assert!(matches!(
            f.change("\n", DEFAULT_MAX_DELTAS),
            Err(PublishError::Empty)
        ));
        // Nothing was published by the failures.
        assert_eq!(f.state().version(), 1);
    }

    fn issue_event(id: &str, number: &str) -> String {
        serde_json::to_string(&ChangeEvent::TempPermitIssue {
            permit_id: id.into(),
            travel_permit: number.into(),
            issued_at: Some(time::macros::datetime!(2026-11-25 08:00 UTC)),
            expires_at: time::macros::datetime!(2026-12-02 08:00 UTC),
        })
        .expect("json")
    }

    fn revoke_event(id: &str) -> String {
        serde_json::to_string(&ChangeEvent::TempPermitRevoke {
            permit_id: id.into(),
        })
        .expect("json")
    }

    /// Publishes records as the origin does (src/origin): through [`commit`].
    fn commit_records(f: &Fixture, records: Vec<Record>) {
        let (manifest, data) = load_current(&f.repo(), &f.sk, &f.hk).expect("current");
        commit(
            crate::publish::Target::dir(&f.repo()),
            manifest,
            &data,
            Commit {
                changes: records.into_iter().map(|r| (r.key, Some(r))).collect(),
                journal: Vec::new(),
            },
            &f.sk,
            &f.hk,
            &opts(),
            DEFAULT_MAX_DELTAS,
        )
        .expect("commit");
    }

    #[test]
    fn temporary_permits_published_by_the_origin_are_kept_by_full_publications() {
        use crate::temp_permit::PermitId;
        let f = Fixture::new();
        let (a, b) = ("00000000000000aa", "00000000000000bb");
        let key = |id: &str| PermitId::parse(id).expect("id").doc_key(&f.hk);
        let holder = f.get(&f.state(), "H12345678").expect("holder");
        let issued = |id: &str, status: RecordStatus| Record {
            status,
            ..crate::issuance::issuance_record(
                key(id),
                &holder,
                Some(time::macros::datetime!(2026-11-25 08:00 UTC)),
                time::macros::datetime!(2026-12-02 08:00 UTC),
            )
        };
        commit_records(&f, vec![issued(a, RecordStatus::Valid)]);
        commit_records(
            &f,
            vec![
                issued(a, RecordStatus::Revoked),
                issued(b, RecordStatus::Valid),
            ],
        );
        let state = f.state();
        assert_eq!(
            state.get(&key(a)).map(|r| (r.kind, r.status, r.person)),
            Some((
                DocumentKind::TemporaryPermit,
                RecordStatus::Revoked,
                holder.person
            ))
        );

        // The authority's next full export knows nothing of them; they stay, revocation
        // and all.
        let diff = publish_diff(
            &f.export(),
            &f.repo(),
            &f.sk,
            &f.hk,
            &opts(),
            DEFAULT_MAX_DELTAS,
        );
        assert!(matches!(diff, Err(PublishError::NoChanges)), "{diff:?}");
        f.publish_full().expect("full");
        let state = f.state();
        assert_eq!(state.version(), 4);
        assert_eq!(
            state.get(&key(a)).map(|r| r.status),
            Some(RecordStatus::Revoked)
        );
        assert_eq!(
            state.get(&key(b)).map(|r| r.status),
            Some(RecordStatus::Valid)
        );
    }

    /// A change file cannot issue or revoke a temporary permit: that would bypass the
    /// origin's policy (a third permit in a month by leaving out a flag, say).
    #[test]
    fn change_files_cannot_issue_or_revoke_temporary_permits() {
        let f = Fixture::new();
        for lines in [
            issue_event("00000000000000aa", "H12345678"),
            revoke_event("00000000000000cc"),
        ] {
            let e = f
                .change(&lines, DEFAULT_MAX_DELTAS)
                .expect_err("refused")
                .to_string();
            assert!(
                e.contains("issued and revoked by the origin") && e.contains("line 1"),
                "{e}"
            );
            assert!(!e.contains("H12345678"), "{e}");
        }
        assert_eq!(f.state().version(), 1, "nothing was published");
    }
}
