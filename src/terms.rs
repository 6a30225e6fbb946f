//! The Chinese terms for every answer a person reads: one table, used wherever the project
//! prints for people (the printed receipt) and documented in docs/partners.md §3, which a
//! test keeps equal to this.

use crate::checks::LinkResult;
use crate::snapshot::RecordStatus;
use crate::temp_permit::{Reason, TokenStatus};

pub fn link_result(r: LinkResult) -> &'static str {
    match r {
        LinkResult::Linked => "关联一致",
        LinkResult::NotLinked => "不属同一人",
        LinkResult::TravelPermitNotFound => "未查到该通行证",
        LinkResult::ResidencePermitNotFound => "未查到该居住证",
        LinkResult::HolderNotEligible => "持证人不可申领居住证",
    }
}

pub fn record_status(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::Valid => "有效",
        RecordStatus::Lost => "挂失",
        RecordStatus::Damaged => "损毁",
        RecordStatus::Revoked => "作废",
        RecordStatus::Replaced => "已换发",
        RecordStatus::Expired => "过期",
    }
}

pub fn token_status(s: TokenStatus) -> &'static str {
    match s {
        TokenStatus::Valid => "有效",
        TokenStatus::Expired => "已过期",
        TokenStatus::NotYetValid => "尚未生效",
        TokenStatus::Revoked => "已撤销",
        TokenStatus::BadSignature => "签名无效",
        TokenStatus::UnknownKey => "签发密钥未知",
        TokenStatus::Malformed => "格式错误",
    }
}

pub fn reason(r: Reason) -> &'static str {
    match r {
        Reason::Lost => "遗失",
        Reason::Damaged => "损毁",
        Reason::Forgotten => "未随身携带",
    }
}

// Here, beside the terms it reads: a reason is typed by an officer in either language.
impl std::str::FromStr for Reason {
    type Err = String;

    /// The English word, or the Chinese term an officer uses (遗失, 损毁, 未随身携带).
    fn from_str(s: &str) -> Result<Reason, String> {
        let s = s.trim();
        [Reason::Lost, Reason::Damaged, Reason::Forgotten]
            .into_iter()
            .find(|r| <&str>::from(*r) == s || reason(*r) == s)
            .ok_or_else(|| {
                "原因须为 遗失、损毁 或 未随身携带 / reason must be lost, damaged or forgotten"
                    .into()
            })
    }
}

/// The Mainland Travel Permit's name for its holder's region: 港澳居民来往内地通行证 for
/// Hong Kong and Macao residents, 台湾居民来往大陆通行证 for Taiwan residents.
pub fn travel_permit_name(region: crate::document::Region) -> (&'static str, &'static str) {
    match region {
        crate::document::Region::Taiwan => (
            "台湾居民来往大陆通行证",
            "Mainland Travel Permit for Taiwan Residents",
        ),
        _ => (
            "港澳居民来往内地通行证",
            "Mainland Travel Permit for Hong Kong and Macao Residents",
        ),
    }
}

/// The residence permit's name: one document for all three regions.
pub const RESIDENCE_PERMIT_NAME: (&str, &str) = (
    "港澳台居民居住证",
    "Residence Permit for Hong Kong, Macao and Taiwan Residents",
);

/// The title of a link check's paper: the words cover every region's travel permit.
pub const LINK_CHECK_TITLE: (&str, &str) = (
    "港澳台居民通行证与居住证关联核验结果",
    "Verification of travel permit and residence permit link",
);

/// The two documents of a link check by their names, a line each as a page has room for:
/// the holder's travel permit when the region is known (a receipt of format 3), else both
/// travel permits, so that neither holder reads the other's.
pub fn link_check_documents(region: Option<crate::document::Region>) -> Vec<String> {
    use crate::document::Region;
    let (rp_zh, rp_en) = RESIDENCE_PERMIT_NAME;
    match region {
        Some(r) => {
            let (tp_zh, tp_en) = travel_permit_name(r);
            vec![format!("{tp_zh}、{rp_zh}"), tp_en.into(), rp_en.into()]
        }
        None => {
            let (hk_zh, hk_en) = travel_permit_name(Region::HongKong);
            let (tw_zh, tw_en) = travel_permit_name(Region::Taiwan);
            vec![
                format!("{hk_zh}或{tw_zh}"),
                rp_zh.into(),
                hk_en.into(),
                format!("or {tw_en}"),
                rp_en.into(),
            ]
        }
    }
}

/// What a temporary permit may be used for, and what not, in both languages.
pub const TEMP_PERMIT_USE: (&str, &str) = (
    "仅限内地铁路、民航出行使用，不得用于出入境",
    "Rail and air travel within the mainland only; not for crossing the border",
);

/// A document's status not on record.
pub const NOT_FOUND: &str = "未查到";

#[cfg(test)]
mod tests {
    use crate::document::Region;

    /// A Taiwan resident's travel permit is not called the Hong Kong and Macao one's.
    #[test]
    fn each_holder_reads_their_own_document() {
        let taiwan = super::link_check_documents(Some(Region::Taiwan)).join(" ");
        assert!(taiwan.contains("台湾居民来往大陆通行证") && !taiwan.contains("往来内地"));
        assert!(!taiwan.contains("港澳居民来往内地通行证"), "{taiwan}");
        let hk = super::link_check_documents(Some(Region::HongKong)).join(" ");
        assert!(
            hk.contains("港澳居民来往内地通行证") && !hk.contains("台湾"),
            "{hk}"
        );
        let either = super::link_check_documents(None).join(" ");
        assert!(either.contains("港澳居民来往内地通行证或台湾居民来往大陆通行证"));
    }
    use super::*;
    use strum::VariantArray;

    /// `(value, 中文)` of the rows of docs/partners.md §3 whose field names `field`.
    fn documented(field: &str) -> Vec<(String, String)> {
        let doc = include_str!("../docs/partners.md");
        let mut current = String::new();
        doc.lines()
            .filter(|l| l.starts_with("| "))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                if !cells[1].is_empty() {
                    current = cells[1].to_owned();
                }
                (current.starts_with(field) && cells[2].starts_with('`'))
                    .then(|| (cells[2].trim_matches('`').to_owned(), cells[3].to_owned()))
            })
            .collect()
    }

    const RESULTS: [LinkResult; 5] = [
        LinkResult::Linked,
        LinkResult::NotLinked,
        LinkResult::TravelPermitNotFound,
        LinkResult::ResidencePermitNotFound,
        LinkResult::HolderNotEligible,
    ];
    const STATUSES: [RecordStatus; 6] = [
        RecordStatus::Valid,
        RecordStatus::Lost,
        RecordStatus::Damaged,
        RecordStatus::Revoked,
        RecordStatus::Replaced,
        RecordStatus::Expired,
    ];
    const REASONS: [Reason; 3] = [Reason::Lost, Reason::Damaged, Reason::Forgotten];

    #[test]
    fn the_partner_guide_has_these_terms() {
        let results = documented("`result` (link check)");
        for r in RESULTS {
            assert!(
                results.contains(&(r.label().to_owned(), link_result(r).to_owned())),
                "{r:?} in {results:?}"
            );
        }
        let statuses = documented("`status` (a document)");
        for s in STATUSES {
            assert!(
                statuses.contains(&(s.label().to_owned(), record_status(s).to_owned())),
                "{s:?} in {statuses:?}"
            );
        }
        let tokens = documented("`status` (a temporary permit)");
        for &s in TokenStatus::VARIANTS {
            assert!(
                tokens.contains(&(s.label().to_owned(), token_status(s).to_owned())),
                "{s:?} in {tokens:?}"
            );
        }
        assert_eq!(results.len(), 5);
        assert_eq!(statuses.len(), 6);
        assert_eq!(tokens.len(), TokenStatus::VARIANTS.len());
        let doc = include_str!("../docs/partners.md");
        let reasons = doc
            .lines()
            .find(|l| l.starts_with("| `reason`"))
            .expect("the reason row");
        for r in REASONS {
            assert!(reasons.contains(reason(r)), "{r:?} in {reasons}");
        }
    }

    /// The verifier page's table (`T` in verify.js: `key: ['中文', 'English']`) has the same
    /// Chinese terms.
    #[test]
    fn the_verifier_page_has_these_terms() {
        let page = include_str!("verify_site/page/verify.js");
        let has = |key: &str, zh: &str| {
            assert!(
                page.contains(&format!("    {key}: ['{zh}', ")),
                "{key}: {zh} not in verify.js"
            );
        };
        for r in RESULTS {
            has(r.label(), link_result(r));
        }
        for s in STATUSES {
            has(s.label(), record_status(s));
        }
        has("not_found", NOT_FOUND);
        for r in REASONS {
            has(&format!("reason_{}", <&str>::from(r)), reason(r));
        }
    }
}
