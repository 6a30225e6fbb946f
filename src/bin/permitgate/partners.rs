//! `permitgate partners enrol | list | revoke`: the partner lifecycle with the partner CA
//! and the partner registry (the config's `partners_file`), not with openssl by hand.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use time::OffsetDateTime;

use permitgate::config::{Config, RawPartner, RawRateLimit};
use permitgate::partner::Scope;
use permitgate::partner_ca::{self, CaKeySource, PartnerCa};

use crate::output::out;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a partner's CSR, issue its client certificate from the partner CA, and add
    /// the partner to the registry (gateways reload it).
    Enrol(EnrolArgs),
    /// Every partner: id, scopes, rate, certificate expiry and, from a gateway's metrics,
    /// when it last connected.
    List {
        #[arg(long)]
        config: PathBuf,
        /// A gateway's metrics listener, for "last seen" (e.g. http://127.0.0.1:9464).
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Add a partner's certificates (every one the registry lists for --id, or one
    /// --serial) to the CRL (tls.crls' first file), signed again; gateways reload it and
    /// refuse them from their next handshake or request.
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct EnrolArgs {
    #[arg(long)]
    config: PathBuf,
    /// The partner's certificate signing request (PEM).
    #[arg(long)]
    csr: PathBuf,
    #[arg(long)]
    id: String,
    /// Comma-separated: link_check, document_status, temp_permit, receipt,
    /// receipt_verify, replicate.
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// Requests per second, optionally /BURST (e.g. 100/200); none: unlimited.
    #[arg(long)]
    rate: Option<String>,
    #[arg(long)]
    display_name_zh: Option<String>,
    #[arg(long)]
    display_name_en: Option<String>,
    /// The certificate's lifetime.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// The partner CA's private key (its certificate is the config's tls.client_ca): a PEM
    /// file, or a key in an HSM as a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=file:…).
    #[arg(long, value_parser = ca_key)]
    ca_key: CaKeySource,
    /// Where the certificate goes (default: ID.crt).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long, required_unless_present = "serial", conflicts_with = "serial")]
    id: Option<String>,
    /// Hex, as `openssl x509 -serial` prints it.
    #[arg(long)]
    serial: Option<String>,
    /// unspecified, key-compromise, affiliation-changed, superseded,
    /// cessation-of-operation.
    #[arg(long, default_value = "unspecified")]
    reason: String,
    /// As for enrol: a PEM file or a PKCS#11 URI.
    #[arg(long, value_parser = ca_key)]
    ca_key: CaKeySource,
}

fn ca_key(text: &str) -> Result<CaKeySource, String> {
    CaKeySource::parse(text, |p| p).map_err(|e| e.to_string())
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Enrol(args) => enrol(args),
        Command::List { config, metrics } => list(&config, metrics.as_deref()),
        Command::Revoke(args) => revoke(args),
    }
}

fn registry_path(config: &Config) -> anyhow::Result<PathBuf> {
    match &config.partners_file {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "{}: partners_file is not set; enrolled partners are kept in a registry of their own (docs/partners.md)",
            config.path.display()
        ),
    }
}

fn enrol(a: EnrolArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    let path = registry_path(&config)?;
    if config.partners.iter().any(|p| p.id == a.id) {
        bail!(
            "partner {:?} is already enrolled; a new certificate comes by renewal",
            a.id
        );
    }
    let scopes = a
        .scopes
        .iter()
        .map(|s| {
            serde_json::from_value::<Scope>(serde_json::Value::String(s.clone())).map_err(|_| {
                anyhow::anyhow!(
                    "--scopes: {s:?} is not a scope (link_check, document_status, temp_permit, receipt, receipt_verify, replicate)"
                )
            })
        })
        .collect::<anyhow::Result<Vec<Scope>>>()?;
    let rate_limit = a.rate.as_deref().map(parse_rate).transpose()?;
    let csr = std::fs::read_to_string(&a.csr).with_context(|| a.csr.display().to_string())?;
    let ca = PartnerCa::load(&config.tls.client_ca, &a.ca_key)?;
    let partner = RawPartner {
        id: a.id.clone(),
        scopes,
        rate_limit,
        display_name_zh: a.display_name_zh,
        display_name_en: a.display_name_en,
        ..RawPartner::default()
    };
    // The entry is checked by the config's own rules before anything is issued.
    check_entry(&a.config, &partner)?;
    let (pem, issued) =
        partner_ca::enrol(&ca, &path, partner, &csr, a.days, OffsetDateTime::now_utc())
            .with_context(|| format!("{} refused", a.csr.display()))?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.crt", a.id)));
    if let Err(e) = std::fs::write(&out, &pem) {
        // Enrolled and recorded: the certificate must not be lost with the file.
        out!("{pem}")?;
        return Err(e).with_context(|| {
            format!(
                "{}: {} is enrolled, but its certificate could not be written there; it is printed above",
                out.display(),
                a.id
            )
        });
    }
    out!(
        "enrolled {}: certificate {} (serial {}, valid until {}); added to {}",
        a.id,
        out.display(),
        issued.serial,
        permitgate::day::for_people(issued.not_after).1,
        path.display()
    )?;
    Ok(())
}

/// The config as it would be with `partner` added inline: what its rules say of it.
fn check_entry(config: &Path, partner: &RawPartner) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| config.display().to_string())?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| config.display().to_string())?;
    let entry = toml::Value::try_from(partner)?;
    match table
        .get_mut("partners")
        .and_then(toml::Value::as_array_mut)
    {
        Some(inline) => inline.push(entry),
        None => {
            table.insert("partners".into(), toml::Value::Array(vec![entry]));
        }
    }
    Config::parse(&toml::to_string(&table)?, config)
        .map(drop)
        .context("the new partner breaks the config's rules; nothing was issued")
}

fn parse_rate(text: &str) -> anyhow::Result<RawRateLimit> {
    let bad =
        || anyhow::anyhow!("--rate: {text:?} must be PER_SECOND or PER_SECOND/BURST, e.g. 100/200");
    let (rate, burst) = match text.split_once('/') {
        Some((r, b)) => (r, Some(b.parse::<u32>().map_err(|_| bad())?)),
        None => (text, None),
    };
    let per_second = rate.parse::<f64>().map_err(|_| bad())?;
    if !per_second.is_finite() || per_second <= 0.0 || burst == Some(0) {
        return Err(bad());
    }
    Ok(RawRateLimit { per_second, burst })
}

fn list(path: &Path, metrics: Option<&str>) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let seen = match metrics {
        Some(url) => last_seen(url)?,
        None => Default::default(),
    };
    // Times in Beijing time, as the authority's people read them.
    let when = |t: OffsetDateTime| permitgate::day::for_people(t).1;
    out!(
        "{:<20} {:<52} {:<12} {:<30} last seen",
        "id",
        "scopes",
        "rate",
        "certificate until"
    )?;
    for p in &config.partners {
        let scopes: Vec<&str> = p.scopes.iter().map(|s| s.as_str()).collect();
        let rate = p.rate_limit.map_or("unlimited".to_owned(), |r| {
            format!("{}/{}", r.per_second, r.burst)
        });
        let until = p
            .certificates
            .iter()
            .map(|c| c.not_after)
            .max()
            .map_or("-".to_owned(), when);
        let last = seen
            .get(&p.id)
            .and_then(|t| OffsetDateTime::from_unix_timestamp(*t).ok())
            .map_or("-".to_owned(), when);
        out!(
            "{:<20} {:<52} {:<12} {:<30} {}",
            p.id,
            scopes.join(","),
            rate,
            until,
            last
        )?;
    }
    Ok(())
}

/// `permitgate_partner_last_seen_timestamp_seconds` by partner, from a metrics listener.
fn last_seen(url: &str) -> anyhow::Result<std::collections::HashMap<String, i64>> {
    let addr = url
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
        .with_context(|| format!("--metrics {url:?}: give http://HOST:PORT"))?;
    let text = http_get_text(addr, "/metrics").with_context(|| format!("reading {url}/metrics"))?;
    let prefix = "permitgate_partner_last_seen_timestamp_seconds{partner=\"";
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (id, value) = rest.split_once("\"} ")?;
            let t = value.trim().parse::<f64>().ok()? as i64;
            (t > 0).then(|| (id.to_owned(), t))
        })
        .collect())
}

fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    let Some(crl) = config.tls.crls.first() else {
        bail!(
            "{}: tls.crls names no CRL; name the file the partner CA's CRL is kept in (it is made if absent)",
            a.config.display()
        );
    };
    let reason = partner_ca::reason(&a.reason).with_context(|| {
        format!("--reason {:?}: unspecified, key-compromise, affiliation-changed, superseded or cessation-of-operation", a.reason)
    })?;
    let serials: Vec<String> = match (&a.id, &a.serial) {
        (Some(id), _) => {
            let p = config
                .partners
                .iter()
                .find(|p| &p.id == id)
                .with_context(|| format!("--id {id:?}: no such partner"))?;
            if p.certificates.is_empty() {
                bail!("--id {id:?}: the registry lists no certificate of it; revoke by --serial");
            }
            p.certificates.iter().map(|c| c.serial.clone()).collect()
        }
        (None, Some(s)) => vec![s.trim_start_matches("serial=").to_uppercase()],
        (None, None) => bail!("give --id or --serial"),
    };
    let ca = PartnerCa::load(&config.tls.client_ca, &a.ca_key)?;
    ca.revoke(crl, &serials, reason, OffsetDateTime::now_utc())?;
    out!(
        "revoked {} certificate(s) ({}); {} signed again: gateways reload it",
        serials.len(),
        serials.join(", "),
        crl.display()
    )?;
    Ok(())
}

/// The body of `GET path` from a plain-HTTP listener at `addr` (HOST:PORT): the ops
/// listener, on the operator's own network.
fn http_get_text(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") =>
        {
            Ok(body.to_owned())
        }
        _ => anyhow::bail!("{addr}{path} did not answer 200"),
    }
}
