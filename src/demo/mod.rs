//! `permitgate demo`: everything a newcomer needs in one directory, made once and reused.
//!
//! Layout under the demo directory:
//! `pki/` (see [`pki`]), `keys/publisher.key|.pub`, `keys/hash.key`,
//! `keys/receipt.key|.pub` (receipt signing), `keys/temp-permit.key|.pub` (the authority's
//! temporary-permit issuing key), `keys/audit-checkpoint.key|.pub` (the audit trail's
//! signed checkpoints), `export.jsonl`, `repo/` (signed snapshot),
//! `samples.json`, and `gateway.toml`, a config that `permitgate serve --config` accepts
//! as it is.
//!
//! A valid temporary permit expires after seven days, so its sample is issued afresh
//! every time the demo starts.

pub mod data;
pub mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::day::Day;
use crate::document::TravelPermitNo;
use crate::key_files::{
    generate_signing_key, load_signing_key, save_signing_key, save_verifying_key, HashKey,
};
use crate::publish::{publish, PublishOptions};
use crate::temp_permit::{self, Reason};

pub use data::{Sample, MIN_RECORDS};
pub use pki::{PkiLayout, DEMO_PARTNERS};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Key(#[from] crate::key_files::KeyError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error("demo file {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--records must be at least {MIN_RECORDS}")]
    TooFewRecords,
    #[error(
        "demo samples in {0} lack the lost travel permit; delete the directory to start afresh"
    )]
    Samples(PathBuf),
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub records: usize,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub seed: u64,
    /// Where `permitgate demo` serves the verifier page: the receipts' QR codes lead there.
    pub verify_listen: Option<SocketAddr>,
    /// Where the origin (the authority's API) listens.
    pub origin_listen: SocketAddr,
}

/// The demo's issuing authority, in both languages: clearly not a real one.
pub const DEMO_AUTHORITY: (&str, &str) = (
    "演示签发机构（非真实机构）",
    "Demo issuing authority (not a real authority)",
);

#[derive(Debug, Clone)]
pub struct Demo {
    pub dir: PathBuf,
    pub pki: PkiLayout,
    pub config: PathBuf,
    pub samples: Vec<Sample>,
    /// False when an earlier run's data was reused.
    pub created: bool,
    /// What became of the config this start wrote.
    pub config_written: ConfigWritten,
}

/// The demo's config, written at every start for the addresses given, unless a person
/// edited the one it wrote last: an edit is never overwritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWritten {
    /// Written (new, unchanged since the demo wrote it, or the same text).
    Written,
    /// Edited since the demo wrote it: kept and served; the config this start would have
    /// written is at `new`.
    KeptEdited { new: PathBuf },
    /// A config the demo has no record of writing (an earlier version's): replaced, and
    /// kept at `old`.
    Replaced { old: PathBuf },
}

/// Writes `text` to `path` unless the file there was edited since the demo last wrote it
/// (its hash is recorded beside it, `.gateway.toml.written`).
fn write_config(path: &Path, text: &str) -> Result<ConfigWritten, DemoError> {
    let record = path.with_file_name(format!(
        ".{}.written",
        path.file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy())
    ));
    let beside = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let hash = |bytes: &[u8]| blake3::hash(bytes).to_hex().to_string();
    let outcome = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigWritten::Written,
        Err(e) => return Err(io(path)(e)),
        Ok(there) if there == text.as_bytes() => ConfigWritten::Written,
        Ok(there) => match std::fs::read_to_string(&record) {
            Ok(recorded) if recorded.trim() == hash(&there) => ConfigWritten::Written,
            Ok(_) => {
                let new = beside(".new");
                std::fs::write(&new, text).map_err(io(&new))?;
                return Ok(ConfigWritten::KeptEdited { new });
            }
            Err(_) => {
                let old = beside(".old");
                std::fs::write(&old, &there).map_err(io(&old))?;
                ConfigWritten::Replaced { old }
            }
        },
    };
    std::fs::write(path, text).map_err(io(path))?;
    std::fs::write(&record, hash(text.as_bytes())).map_err(io(&record))?;
    Ok(outcome)
}

impl Demo {
    pub fn publisher_key(&self) -> PathBuf {
        self.dir.join("keys/publisher.key")
    }
    pub fn publisher_pub(&self) -> PathBuf {
        self.dir.join("keys/publisher.pub")
    }
    pub fn hash_key(&self) -> PathBuf {
        self.dir.join("keys/hash.key")
    }
    pub fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }
    pub fn export(&self) -> PathBuf {
        self.dir.join("export.jsonl")
    }
    pub fn receipt_key(&self) -> PathBuf {
        self.dir.join("keys/receipt.key")
    }
    pub fn temp_permit_key(&self) -> PathBuf {
        self.dir.join("keys/temp-permit.key")
    }
    pub fn temp_permit_pub(&self) -> PathBuf {
        self.dir.join("keys/temp-permit.pub")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates (or reuses) the demo directory and writes a config for the given addresses.
pub fn prepare(dir: &Path, opts: &DemoOptions) -> Result<Demo, DemoError> {
    if opts.records < MIN_RECORDS {
        return Err(DemoError::TooFewRecords);
    }
    let mut demo = Demo {
        dir: dir.to_owned(),
        pki: PkiLayout {
            dir: dir.join("pki"),
        },
        config: dir.join("gateway.toml"),
        samples: Vec::new(),
        created: false,
        config_written: ConfigWritten::Written,
    };
    let samples_path = dir.join("samples.json");
    let complete = demo.pki.exists()
        && demo.repo().join(crate::snapshot::MANIFEST_FILE).exists()
        && samples_path.exists()
        && demo.hash_key().exists()
        && demo.temp_permit_key().exists()
        && demo.receipt_key().exists();
    if complete {
        let text = std::fs::read_to_string(&samples_path).map_err(io(&samples_path))?;
        demo.samples =
            serde_json::from_str(&text).map_err(|e| io(&samples_path)(std::io::Error::other(e)))?;
    } else {
        std::fs::create_dir_all(dir.join("keys")).map_err(io(dir))?;
        pki::generate(&demo.pki.dir)?;
        let sk = generate_signing_key();
        save_signing_key(&sk, &demo.publisher_key())?;
        save_verifying_key(&sk.verifying_key(), &demo.publisher_pub())?;
        let hk = HashKey::generate();
        hk.save(&demo.hash_key())?;
        for (private, public) in [
            (demo.receipt_key(), demo.dir.join("keys/receipt.pub")),
            (demo.temp_permit_key(), demo.temp_permit_pub()),
        ] {
            let k = generate_signing_key();
            save_signing_key(&k, &private)?;
            save_verifying_key(&k.verifying_key(), &public)?;
        }
        let now = OffsetDateTime::now_utc();
        let export = demo.export();
        demo.samples = data::write_export(&export, opts.records, Day::of(now), opts.seed)
            .map_err(io(&export))?;
        // A fresh repo: a stale one from an interrupted run must not block version 1.
        let _ = std::fs::remove_dir_all(demo.repo());
        publish(
            &export,
            &demo.repo(),
            &load_signing_key(&demo.publisher_key())?,
            &hk,
            &PublishOptions {
                version: None,
                expires_in: time::Duration::days(30),
                now,
            },
        )?;
        demo.created = true;
    }
    pki::generate_authority(&demo.pki)?;
    // A demo directory of an earlier version kept its partners in gateway.toml.
    if !pki::enrol_partners(&demo.pki)?.contains(&pki::SANDBOX) {
        pki::renew_sandbox(&demo.pki)?;
    }
    // Made when missing, so that a demo directory of an earlier version gains it.
    let checkpoint_key = demo.dir.join("keys/audit-checkpoint.key");
    if !checkpoint_key.exists() {
        let k = generate_signing_key();
        save_signing_key(&k, &checkpoint_key)?;
        save_verifying_key(
            &k.verifying_key(),
            &demo.dir.join("keys/audit-checkpoint.pub"),
        )?;
    }
    // Issued afresh at every start: it is valid for seven days only.
    let lost = lost_travel_permit(&demo)?;
    let (token, permit) = temp_permit::issue(
        &lost,
        "CHAN Tai Man",
        Reason::Lost,
        OffsetDateTime::now_utc(),
        &load_signing_key(&demo.temp_permit_key())?,
    )
    .map_err(|e| io(&samples_path)(std::io::Error::other(e)))?;
    demo.samples.retain(|s| s.name != "temp_permit_valid");
    demo.samples.push(temp_permit_sample(
        "temp_permit_valid",
        "the holder of the lost travel permit shows a 7-day temporary permit",
        &token,
        serde_json::json!({"status": "valid", "permit_id": permit.permit_id.to_string(), "holder": {"travel_permit": lost.masked()}, "valid_for": ["rail", "air"], "travel_permit_status": "lost"}),
    ));
    let json = serde_json::to_vec_pretty(&demo.samples)
        .map_err(|e| io(&samples_path)(std::io::Error::other(e)))?;
    std::fs::write(&samples_path, json).map_err(io(&samples_path))?;
    demo.config_written = write_config(&demo.config, &config_text(opts))?;
    Ok(demo)
}

/// The travel permit reported lost, from its document-status sample.
fn lost_travel_permit(demo: &Demo) -> Result<TravelPermitNo, DemoError> {
    demo.samples
        .iter()
        .find(|s| s.name == "travel_permit_lost_status")
        .and_then(|s| s.body["number"].as_str())
        .and_then(|n| TravelPermitNo::parse(n).ok())
        .ok_or_else(|| DemoError::Samples(demo.dir.clone()))
}

fn temp_permit_sample(
    name: &str,
    description: &str,
    token: &str,
    expect: serde_json::Value,
) -> Sample {
    Sample {
        name: name.into(),
        description: description.into(),
        partner: "rail-gate".into(),
        path: "/v1/temporary-permits/verify".into(),
        body: serde_json::json!({ "token": token }),
        expect,
    }
}

fn config_text(opts: &DemoOptions) -> String {
    let mut s = format!(
        r#"# Written by `permitgate demo`; config/gateway.toml documents every option.

# The partners, enrolled with `permitgate partners enrol` (their names, scopes, rates
# and the certificates issued to them); reloaded when it changes.
partners_file = "pki/partners.toml"

[server]
listen = "{}"
metrics_listen = "{}"

[tls]
cert = "pki/server.crt"
key = "pki/server.key"
client_ca = "pki/ca.crt"

# Partners renew their certificates over the API (POST /v1/partner/certificate); each
# renewal is recorded in the registry.
[partner_ca]
key = "pki/ca.key"

[snapshot]
repo = "repo"
publisher_keys = ["keys/publisher.pub"]
hash_key = "keys/hash.key"

# The demo's clients are on this machine: a partner network, not strangers held to one
# source's handshake rate (a loop of curl commands would outrun it). A deployment names
# its partners' address ranges here.
[unauthenticated]
partner_networks = ["127.0.0.0/8", "::1/128"]

[receipts]
signing_keys = [{{ path = "keys/receipt.key" }}]
authority = {{ zh = "{}", en = "{}" }}
{}
[temp_permits]
issuer_keys = [{{ path = "keys/temp-permit.pub" }}]

[audit]
dir = "audit"
# Signed checkpoints of the trail, outside its directory: `permitgate audit verify audit
# --checkpoints audit-checkpoints --public-key keys/audit-checkpoint.pub`.
checkpoint_key = "keys/audit-checkpoint.key"
checkpoint_dir = "audit-checkpoints"

# The authority's own API (`permitgate origin`; `permitgate demo` serves it too): issuing
# and revoking temporary permits, published into `repo` at once. Its callers hold
# certificates of the authority's CA, which no partner certificate chains to.
[origin]
listen = "{}"
client_ca = "pki/authority-ca.crt"
publisher_key = "keys/publisher.key"
temp_permit_key = "keys/temp-permit.key"
audit_dir = "origin-audit"
"#,
        opts.listen,
        opts.metrics_listen,
        DEMO_AUTHORITY.0,
        DEMO_AUTHORITY.1,
        opts.verify_listen.map(demo_verify_url).unwrap_or_default(),
        opts.origin_listen,
    );
    for (id, office, scopes) in pki::DEMO_CALLERS {
        let scopes: Vec<String> = scopes
            .iter()
            .map(|s| format!("\"{}\"", crate::origin::api::scope_name(*s)))
            .collect();
        s.push_str(&format!(
            "\n[[origin.callers]]\nid = \"{id}\"\noffice = \"{office}\"\nscopes = [{}]\n",
            scopes.join(", ")
        ));
    }
    s
}

/// The `verify_url` line of the demo's config for the page served on `listen`. Plain HTTP
/// is a verifier page only on loopback (the page's WebCrypto needs a secure origin
/// elsewhere): an unspecified address is reached through loopback, any other gets no
/// link, and the config says why.
fn demo_verify_url(listen: SocketAddr) -> String {
    let reach = match listen.ip() {
        ip if ip.is_loopback() => Some(listen),
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => Some(SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            listen.port(),
        ))),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => Some(SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            listen.port(),
        ))),
        _ => None,
    };
    match reach {
        Some(a) => format!(
            "verify_url = \"http://{a}{}\"\n",
            crate::verify_site::PAGE_PATH
        ),
        None => format!(
            "# no verify_url: the page on {listen} is plain HTTP, which a phone's browser \
             lets verify only on loopback; serve it over HTTPS and name that address here\n"
        ),
    }
}
