//! What to send: a pool of prepared requests drawn from the demo's export.
//!
//! Requests are built before the run starts, so the generator's own cost per request is a
//! pool index and a reference-counted body clone. Each carries the status it should get:
//! 200 for real checks (hits and misses alike), 422 for the chosen share of invalid
//! numbers; anything else is counted as an error.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{json, Value};

use permitgate::document::{check_character, Region, TravelPermitNo};
use permitgate::temp_permit::{self, Reason};

use crate::LoadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// POST /v1/link-checks
    Link,
    /// POST /v1/document-status
    Status,
    /// POST /v1/temporary-permits/verify (needs --temp-permit-key)
    TempPermit,
    /// POST /v1/link-checks:batch with --batch-size items
    Batch,
    /// 60% link, 30% status, 10% temporary permit (link instead without a
    /// --temp-permit-key; the partner needs every scope involved)
    Mix,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keys {
    Uniform,
    /// Zipf over residents with this exponent: a few are asked about very often.
    Zipf(f64),
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: Kind,
    /// The demo's `export.jsonl` (or any export in that format).
    pub export: PathBuf,
    pub keys: Keys,
    /// Share of checks about numbers nobody holds (valid numbers, answered "not found").
    pub miss_share: f64,
    /// Share of requests with a number that breaks a rule (answered 422).
    pub invalid_share: f64,
    /// Share of link checks that ask for a signed receipt.
    pub receipt_share: f64,
    pub batch_size: usize,
    /// The authority's temporary-permit issuing key, to make tokens for `temp-permit`.
    pub temp_permit_key: Option<PathBuf>,
    /// Distinct prepared requests, cycled through during the run.
    pub pool: usize,
    pub seed: u64,
}

/// One prepared request.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub path: &'static str,
    pub body: Bytes,
    /// The status a correct gateway answers.
    pub expect: u16,
    /// Checks in it: the batch size for batches, else 1.
    pub items: u32,
}

/// A resident of the export with a travel permit and a residence permit.
pub(crate) struct Resident {
    pub(crate) travel: String,
    pub(crate) residence: String,
}

/// The export's residents holding both permits, and every number in it.
pub(crate) fn read_export(path: &Path) -> Result<(Vec<Resident>, Vec<String>), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut pairs = Vec::new();
    let mut numbers = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| LoadError::Export {
            line: i + 1,
            message: e.to_string(),
        })?;
        let docs: Vec<String> = v["documents"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|d| d["number"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let rp = docs.iter().find(|n| n.len() == 18);
        let tp = docs.iter().find(|n| n.len() != 18);
        if let (Some(tp), Some(rp)) = (tp, rp) {
            pairs.push(Resident {
                travel: tp.clone(),
                residence: rp.clone(),
            });
        }
        numbers.extend(docs);
    }
    if pairs.is_empty() {
        return Err(LoadError::Export {
            line: 0,
            message: "no resident holds both a travel permit and a residence permit".into(),
        });
    }
    Ok((pairs, numbers))
}

/// Valid numbers that are (almost surely) not in the data: fresh random ones of the
/// Hong Kong region, where the export's numbers are a tiny share of the space.
fn unknown_pair(rng: &mut StdRng) -> (String, String) {
    let tp = format!("H{:08}", rng.random_range(0..100_000_000u32));
    let first17 = format!(
        "{}{:04}{:02}{:02}{:03}",
        Region::HongKong.address_code(),
        rng.random_range(1940..2006),
        rng.random_range(1..=12),
        rng.random_range(1..=28),
        rng.random_range(0..1000)
    );
    let rp = format!("{first17}{}", check_character(first17.as_bytes()) as char);
    (tp, rp)
}

struct Draw {
    rng: StdRng,
    zipf: Option<Zipf<f64>>,
    n: usize,
}

impl Draw {
    fn index(&mut self) -> usize {
        match &self.zipf {
            // Zipf ranks are 1..=n.
            Some(z) => (z.sample(&mut self.rng) as usize).clamp(1, self.n) - 1,
            None => self.rng.random_range(0..self.n),
        }
    }
}

/// Builds the request pool for `spec`.
pub fn prepare(spec: &Spec) -> Result<Vec<Prepared>, LoadError> {
    let (residents, numbers) = read_export(&spec.export)?;
    let mut draw = Draw {
        rng: StdRng::seed_from_u64(spec.seed),
        zipf: match spec.keys {
            Keys::Uniform => None,
            Keys::Zipf(s) => Some(
                Zipf::new(residents.len() as f64, s)
                    .map_err(|e| LoadError::Spec(format!("zipf exponent: {e}")))?,
            ),
        },
        n: residents.len(),
    };
    let tokens = match (&spec.temp_permit_key, spec.kind) {
        (Some(key), _) => temp_permit_tokens(key, &residents, spec.seed)?,
        (None, Kind::TempPermit) => {
            return Err(LoadError::Spec(
                "the temp-permit workload needs --temp-permit-key".into(),
            ))
        }
        (None, _) => Vec::new(),
    };
    let pool = spec.pool.max(1);
    let mut out = Vec::with_capacity(pool);
    for _ in 0..pool {
        let kind = match spec.kind {
            Kind::Mix => match draw.rng.random_range(0..10) {
                0..=5 => Kind::Link,
                6..=8 => Kind::Status,
                _ if tokens.is_empty() => Kind::Link,
                _ => Kind::TempPermit,
            },
            k => k,
        };
        out.push(match kind {
            Kind::Link | Kind::Mix => {
                let (check, expect) = link_body(&mut draw, &residents, spec);
                prepared("/v1/link-checks", &check, expect, 1)
            }
            Kind::Status => {
                let invalid = draw.rng.random_bool(spec.invalid_share);
                let number = if invalid {
                    "H1234".to_owned()
                } else if draw.rng.random_bool(spec.miss_share) {
                    unknown_pair(&mut draw.rng).1
                } else {
                    let i = draw.index() % numbers.len();
                    numbers[i].clone()
                };
                prepared(
                    "/v1/document-status",
                    &json!({ "number": number }),
                    if invalid { 422 } else { 200 },
                    1,
                )
            }
            Kind::TempPermit => {
                let i = draw.index() % tokens.len();
                let token = if draw.rng.random_bool(spec.invalid_share) {
                    "PGT1:not a token".to_owned()
                } else {
                    tokens[i].clone()
                };
                // Every verdict, `malformed` included, is a 200 answer.
                prepared(
                    "/v1/temporary-permits/verify",
                    &json!({ "token": token }),
                    200,
                    1,
                )
            }
            Kind::Batch => {
                let checks: Vec<Value> = (0..spec.batch_size)
                    .map(|_| link_body(&mut draw, &residents, spec).0)
                    .collect();
                // Invalid items get their own error inside a 200 answer.
                prepared(
                    "/v1/link-checks:batch",
                    &json!({ "checks": checks }),
                    200,
                    spec.batch_size as u32,
                )
            }
        });
    }
    Ok(out)
}

fn link_body(draw: &mut Draw, residents: &[Resident], spec: &Spec) -> (Value, u16) {
    let invalid = draw.rng.random_bool(spec.invalid_share);
    let (tp, rp) = if draw.rng.random_bool(spec.miss_share) {
        unknown_pair(&mut draw.rng)
    } else {
        let r = &residents[draw.index()];
        (r.travel.clone(), r.residence.clone())
    };
    let tp = if invalid { format!("{tp}X") } else { tp };
    let mut body = json!({ "travel_permit": tp, "residence_permit": rp });
    if spec.receipt_share > 0.0 && draw.rng.random_bool(spec.receipt_share) {
        body["receipt"] = json!(true);
    }
    (body, if invalid { 422 } else { 200 })
}

fn prepared(path: &'static str, body: &Value, expect: u16, items: u32) -> Prepared {
    Prepared {
        path,
        body: Bytes::from(body.to_string()),
        expect,
        items,
    }
}

/// Tokens for up to 1000 residents, issued now, signed with the issuing key.
fn temp_permit_tokens(
    key: &Path,
    residents: &[Resident],
    seed: u64,
) -> Result<Vec<String>, LoadError> {
    let key = permitgate::key_files::load_signing_key(key)
        .map_err(|e| LoadError::Spec(permitgate::report::Report(&e).to_string()))?;
    let now = time::OffsetDateTime::now_utc();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7e57);
    (0..residents.len().min(1000))
        .map(|_| {
            let r = &residents[rng.random_range(0..residents.len())];
            let tp = TravelPermitNo::parse(&r.travel)
                .map_err(|e| LoadError::Spec(format!("export travel permit: {e}")))?;
            temp_permit::issue(&tp, "LOAD Test", Reason::Forgotten, now, &key)
                .map(|(t, _)| t)
                .map_err(|e| LoadError::Spec(e.to_string()))
        })
        .collect()
}
