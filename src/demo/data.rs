//! A synthetic export of residents with realistic, valid numbers, and sample queries whose
//! answers follow from how the data was made.
//!
//! Seeded, so the same `records` and seed give the same export. The first people are
//! fixed cases (a linked valid pair, a lost travel permit, an expired residence permit...)
//! so every sample exists at any size; the rest are drawn at random with a few per cent
//! of documents lost, revoked, damaged or expired and some residents holding only one.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::day::Day;
use crate::document::{check_character, Region};
use crate::snapshot::RecordStatus;

/// Fewer and the fixed cases would not fit.
pub const MIN_RECORDS: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct ExportDoc {
    pub number: String,
    pub status: RecordStatus,
    pub valid_until: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportLine {
    pub person: String,
    pub documents: Vec<ExportDoc>,
}

/// One example request and what the gateway must answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    pub description: String,
    pub partner: String,
    pub path: String,
    pub body: serde_json::Value,
    pub expect: serde_json::Value,
}

struct Numbers {
    rng: StdRng,
    used: HashSet<String>,
}

impl Numbers {
    fn travel(&mut self, region: Region) -> String {
        loop {
            let digits: u32 = self.rng.random_range(0..100_000_000);
            let n = match region {
                Region::HongKong => format!("H{digits:08}"),
                Region::Macao => format!("M{digits:08}"),
                Region::Taiwan => format!("{digits:08}"),
            };
            if self.used.insert(n.clone()) {
                return n;
            }
        }
    }

    /// `HA`/`MA` + 7 digits: a non-Chinese permanent resident's travel permit. Drawn from
    /// `rng`, not the main stream, so that adding these residents moved no other number.
    fn non_chinese(&mut self, rng: &mut StdRng, region: Region) -> String {
        loop {
            let digits: u32 = rng.random_range(0..10_000_000);
            let n = match region {
                Region::Macao => format!("MA{digits:07}"),
                _ => format!("HA{digits:07}"),
            };
            if self.used.insert(n.clone()) {
                return n;
            }
        }
    }

    fn residence(&mut self, region: Region) -> String {
        loop {
            // Any real birth date 1940..2006; day ≤ 28 keeps every month valid.
            let y = self.rng.random_range(1940..2007);
            let m = self.rng.random_range(1..=12);
            let d = self.rng.random_range(1..=28);
            let seq: u32 = self.rng.random_range(0..1000);
            let first17 = format!("{}{y:04}{m:02}{d:02}{seq:03}", region.address_code());
            let n = format!("{first17}{}", check_character(first17.as_bytes()) as char);
            if self.used.insert(n.clone()) {
                return n;
            }
        }
    }
}

/// Writes `records` people to `path` (JSONL) and returns the samples. `today` anchors
/// validity dates so that "expired" and "valid" mean what they say when the demo runs.
pub fn write_export(
    path: &Path,
    records: usize,
    today: Day,
    seed: u64,
) -> std::io::Result<Vec<Sample>> {
    let mut nums = Numbers {
        rng: StdRng::seed_from_u64(seed),
        used: HashSet::with_capacity(records * 2),
    };
    let future = |rng: &mut StdRng| Day(today.0 + rng.random_range(100..3650)).to_string();
    let past =
        |rng: &mut StdRng| Day(today.0.saturating_sub(rng.random_range(30..400))).to_string();
    let doc = |number: String, status: RecordStatus, valid_until: String| ExportDoc {
        number,
        status,
        valid_until,
    };

    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut emit = |i: usize, documents: Vec<ExportDoc>| -> std::io::Result<()> {
        serde_json::to_writer(
            &mut out,
            &ExportLine {
                person: format!("P{i:09}"),
                documents,
            },
        )?;
        out.write_all(b"\n")
    };

    // Fixed cases, all Hong Kong so that cross-person pairs are same-region.
    let hk = Region::HongKong;
    let (tp0, rp0) = (nums.travel(hk), nums.residence(hk));
    let (tp1, rp1) = (nums.travel(hk), nums.residence(hk));
    let (tp2, rp2) = (nums.travel(hk), nums.residence(hk));
    let (tp3, rp3) = (nums.travel(hk), nums.residence(hk));
    let v = |rng: &mut StdRng| future(rng);
    let d0 = vec![
        doc(tp0.clone(), RecordStatus::Valid, v(&mut nums.rng)),
        doc(rp0.clone(), RecordStatus::Valid, v(&mut nums.rng)),
    ];
    let d1 = vec![
        doc(tp1.clone(), RecordStatus::Valid, v(&mut nums.rng)),
        doc(rp1.clone(), RecordStatus::Valid, v(&mut nums.rng)),
    ];
    let d2 = vec![
        doc(tp2.clone(), RecordStatus::Lost, v(&mut nums.rng)),
        doc(rp2.clone(), RecordStatus::Valid, v(&mut nums.rng)),
    ];
    // Recorded as valid, but its date has passed: the gateway derives "expired".
    let d3 = vec![
        doc(tp3.clone(), RecordStatus::Valid, v(&mut nums.rng)),
        doc(rp3.clone(), RecordStatus::Valid, past(&mut nums.rng)),
    ];
    // A Taiwan resident's pair: its travel permit is another document (台湾居民来往大陆通行证),
    // and what people read names it so.
    let tw = Region::Taiwan;
    let (tp4, rp4) = (nums.travel(tw), nums.residence(tw));
    let d4 = vec![
        doc(tp4.clone(), RecordStatus::Valid, v(&mut nums.rng)),
        doc(rp4.clone(), RecordStatus::Valid, v(&mut nums.rng)),
    ];
    for (i, d) in [d0, d1, d2, d3, d4].into_iter().enumerate() {
        emit(i, d)?;
    }
    // Numbers that are valid but nobody has: drawn from the same generator so they are
    // guaranteed unused.
    let unknown_tp = nums.travel(hk);
    let unknown_rp = nums.residence(hk);

    // Non-Chinese permanent residents of Hong Kong and Macao (HA/MA numbers, lifelong,
    // valid five years): no residence permit. The last people of the export, about one in
    // two hundred, from a stream of their own.
    let mut other = StdRng::seed_from_u64(seed ^ 0x4e43_5052);
    let non_chinese_from = records - (records / 200).max(1);
    let mut non_chinese = Vec::new();
    for i in 5..records {
        if i >= non_chinese_from {
            // The first is of Hong Kong: the samples pair it with a Hong Kong residence permit.
            let region = if (i - non_chinese_from) % 3 == 2 {
                Region::Macao
            } else {
                Region::HongKong
            };
            let n = nums.non_chinese(&mut other, region);
            let until = Day(today.0 + other.random_range(100..1825)).to_string();
            non_chinese.push(n.clone());
            emit(i, vec![doc(n, RecordStatus::Valid, until)])?;
            continue;
        }
        let region = match nums.rng.random_range(0..100) {
            0..=49 => Region::HongKong,
            50..=64 => Region::Macao,
            _ => Region::Taiwan,
        };
        let shape = nums.rng.random_range(0..100);
        let mut documents = Vec::with_capacity(2);
        if shape >= 3 {
            let mut n = nums.travel(region);
            if region != Region::Taiwan && nums.rng.random_range(0..5) == 0 {
                n.push_str(&format!("{:02}", nums.rng.random_range(1..10)));
            }
            let (status, until) = match nums.rng.random_range(0..100) {
                0..=2 => (RecordStatus::Lost, future(&mut nums.rng)),
                3 => (RecordStatus::Damaged, future(&mut nums.rng)),
                4 => (RecordStatus::Revoked, future(&mut nums.rng)),
                5..=6 => (RecordStatus::Valid, past(&mut nums.rng)),
                _ => (RecordStatus::Valid, future(&mut nums.rng)),
            };
            documents.push(doc(n, status, until));
        }
        if !(3..6).contains(&shape) {
            let n = nums.residence(region);
            let (status, until) = match nums.rng.random_range(0..100) {
                0 => (RecordStatus::Revoked, future(&mut nums.rng)),
                1..=3 => (RecordStatus::Valid, past(&mut nums.rng)),
                _ => (RecordStatus::Valid, future(&mut nums.rng)),
            };
            documents.push(doc(n, status, until));
        }
        emit(i, documents)?;
    }
    out.flush()?;

    let link = |tp: &str, rp: &str| json!({"travel_permit": tp, "residence_permit": rp});
    let hk_non_chinese = non_chinese.first().cloned().unwrap_or_default();
    Ok(vec![
        Sample {
            name: "linked_pair".into(),
            description: "both documents valid and belonging to one person".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&tp0, &rp0),
            expect: json!({"result": "linked", "travel_permit": {"status": "valid"}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "linked_pair_taiwan".into(),
            description: "a Taiwan resident's documents, both valid and linked".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&tp4, &rp4),
            expect: json!({"result": "linked", "travel_permit": {"status": "valid"}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "linked_pair_with_receipt".into(),
            description: "the same check with a signed receipt (scope receipt)".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: json!({"travel_permit": tp0, "residence_permit": rp0, "receipt": true}),
            expect: json!({"result": "linked", "travel_permit": {"status": "valid"}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "valid_but_not_linked".into(),
            description: "two valid documents of two different people".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&tp0, &rp1),
            expect: json!({"result": "not_linked", "travel_permit": {"status": "valid"}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "travel_permit_lost".into(),
            description: "the travel permit was reported lost".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&tp2, &rp2),
            expect: json!({"result": "linked", "travel_permit": {"status": "lost"}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "travel_permit_lost_status".into(),
            description: "a gate asks about the lost travel permit".into(),
            partner: "rail-gate".into(),
            path: "/v1/document-status".into(),
            body: json!({"number": tp2}),
            expect: json!({"result": "found", "document_type": "travel_permit", "status": "lost"}),
        },
        Sample {
            name: "residence_permit_expired".into(),
            description: "the residence permit's validity date has passed".into(),
            partner: "bank".into(),
            path: "/v1/document-status".into(),
            body: json!({"number": rp3}),
            expect: json!({"result": "found", "document_type": "residence_permit", "status": "expired"}),
        },
        Sample {
            name: "unknown_travel_permit".into(),
            description: "a well-formed travel permit number nobody holds".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&unknown_tp, &rp0),
            expect: json!({"result": "travel_permit_not_found", "travel_permit": {"status": null}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "unknown_residence_permit".into(),
            description: "a well-formed residence permit number nobody holds".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&tp1, &unknown_rp),
            expect: json!({"result": "residence_permit_not_found", "travel_permit": {"status": "valid"}, "residence_permit": {"status": null}}),
        },
        Sample {
            name: "holder_not_eligible".into(),
            description: "a non-Chinese permanent resident's travel permit (HA/MA): its holder cannot hold a residence permit".into(),
            partner: "bank".into(),
            path: "/v1/link-checks".into(),
            body: link(&hk_non_chinese, &rp0),
            expect: json!({"result": "holder_not_eligible", "travel_permit": {"status": "valid"}, "residence_permit": {"status": "valid"}}),
        },
        Sample {
            name: "non_chinese_travel_permit_status".into(),
            description: "a gate asks about a non-Chinese permanent resident's travel permit".into(),
            partner: "rail-gate".into(),
            path: "/v1/document-status".into(),
            body: json!({"number": hk_non_chinese}),
            expect: json!({"result": "found", "document_type": "travel_permit", "region": "hong_kong", "status": "valid"}),
        },
    ])
}
