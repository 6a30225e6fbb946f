//! The verifier page in a real browser: Debian's chromium driven by playwright-core
//! (tests/browser/verify_page.mjs), against `permitgate demo` as a process. A fresh
//! receipt, printed, has a QR code whose link opens to "genuine, linked" in Chinese and
//! English; the two numbers typed match, other numbers do not, a malformed one is named; a
//! changed character is not genuine; temporary permits valid, expired, not yet valid and
//! signed by a foreign key; the page asks for nothing but its own files and keys.json; the
//! page's number rules agree with the gateway's on tests/vectors/numbers.json.
//!
//! `.ci/run` installs chromium and playwright-core and sets PERMITGATE_REQUIRE_BROWSER=1;
//! elsewhere the test says SKIPPED when either is missing. With
//! PERMITGATE_SCREENSHOT=docs/verifier-phone.png it also writes the phone screenshot the
//! README shows.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use permitgate::document::{ResidencePermitNo, TravelPermitNo};
use permitgate::key_files::{generate_signing_key, load_signing_key};
use permitgate::receipt;
use permitgate::temp_permit::{self, Reason};

use crate::common::process::{demo, ops_get, Demo};
use crate::common::{
    assert_success, decode_qr_png, optional_tool, permitgate, printing_unavailable, Client,
};

const REQUIRED_BY: &str = "PERMITGATE_REQUIRE_BROWSER";

/// node, chromium and tests/browser/node_modules/playwright-core, or `None` (SKIPPED).
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let node = optional_tool("node", REQUIRED_BY, "apt-get install nodejs npm")?;
    let chromium = optional_tool("chromium", REQUIRED_BY, "apt-get install chromium")?;
    let module =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !module.is_dir() {
        assert!(
            std::env::var_os(REQUIRED_BY).is_none(),
            "playwright-core is required here ({REQUIRED_BY}): npm ci --prefix tests/browser"
        );
        eprintln!("SKIPPED: playwright-core not installed (npm ci --prefix tests/browser)");
        return None;
    }
    Some((node, chromium))
}

async fn bank(d: &Demo) -> Client {
    let pki = d.dir.join("pki");
    let addr = format!("127.0.0.1:{}", d.port).parse().expect("addr");
    Client::connect(
        addr,
        &pki.join("ca.crt"),
        Some((
            &pki.join("partners/bank.crt"),
            &pki.join("partners/bank.key"),
        )),
    )
    .await
    .expect("bank connects")
}

fn sample(d: &Demo, name: &str) -> Value {
    let samples: Value =
        serde_json::from_slice(&std::fs::read(d.dir.join("samples.json")).expect("samples"))
            .expect("samples JSON");
    samples
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("sample {name}"))
        .clone()
}

/// The receipt with one character changed such that it still reads as a receipt (fields
/// in range, base45 canonical): only the signature can tell.
fn altered(text: &str) -> String {
    let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    for at in (text.len() / 2..text.len()).rev() {
        for c in alphabet.chars() {
            let mut t = text.to_owned();
            t.replace_range(at..at + 1, &c.to_string());
            if t != text && receipt::read(&t).is_ok() {
                return t;
            }
        }
    }
    panic!("no readable alteration");
}

/// What the gateway's parser says of a vector: canonical form and region, or the rule.
fn gateway_verdict(kind: &str, input: &str) -> Value {
    let parsed = match kind {
        "travel" => TravelPermitNo::parse(input).map(|n| (n.canonical().to_owned(), n.region())),
        _ => ResidencePermitNo::parse(input).map(|n| (n.canonical().to_owned(), n.region())),
    };
    match parsed {
        Ok((canonical, region)) => {
            json!({"ok": true, "canonical": canonical, "region": region.as_str()})
        }
        Err(permitgate::document::NumberError::Characters {
            position,
            code_point,
        }) => {
            json!({"ok": false, "error": "characters", "position": position, "codePoint": code_point})
        }
        Err(e) => json!({"ok": false, "error": e.rule()}),
    }
}

/// What the gateway makes of a name, in the form the page's `normaliseName` answers.
fn gateway_name_verdict(input: &str) -> Value {
    use permitgate::person_name::{normalize, NameError};
    match normalize(input) {
        Ok(name) => json!({ "name": name }),
        Err(NameError::Character {
            position,
            code_point,
        }) => json!({"error": "characters", "position": position, "codePoint": code_point}),
        Err(e) => json!({ "error": e.rule() }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_page_checks_receipts_and_permits_in_a_browser() {
    let Some((node, chromium)) = browser_tools() else {
        return;
    };
    let d = demo();
    let page = format!("http://{}{}", d.verify, permitgate::verify_site::PAGE_PATH);

    // A fresh receipt, with the holder's name, as the bank asks for it.
    let linked = sample(&d, "linked_pair")["body"].clone();
    let (tp, rp) = (
        linked["travel_permit"].as_str().expect("tp").to_owned(),
        linked["residence_permit"].as_str().expect("rp").to_owned(),
    );
    let other_rp = sample(&d, "valid_but_not_linked")["body"]["residence_permit"]
        .as_str()
        .expect("rp")
        .to_owned();
    // Typing slips of the linked pair's numbers (a Hong Kong pair: H + 8 digits).
    let typo_o = format!("{}O{}", &tp[..3], &tp[4..]);
    let typo_space = format!("{} {}", &rp[..6], &rp[6..]);
    let swapped = {
        let mut b = tp.clone().into_bytes();
        let i = (1..b.len() - 1)
            .find(|&i| b[i] != b[i + 1])
            .expect("two different neighbouring digits");
        b.swap(i, i + 1);
        String::from_utf8(b).expect("ascii")
    };
    let mut body = linked.clone();
    body["receipt"] = json!(true);
    body["holder_name"] = json!("陳大文 CHAN Tai Man");
    let answer = bank(&d).await.post_json("/v1/link-checks", &body).await;
    answer.assert_ok("link check with receipt");
    let answer = answer.json();
    let url = answer["receipt"]["url"]
        .as_str()
        .expect("the receipt's link")
        .to_owned();
    let text = answer["receipt"]["encoded"]
        .as_str()
        .expect("receipt")
        .to_owned();
    assert!(url.starts_with(&format!("{page}#PGR3:")), "{url}");

    // The keys beside the page are those the gateway publishes.
    let served = ops_get(d.verify, "/verify/keys.json").expect("the page's server answers");
    let (head, keys_json) = served.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.contains(" 200 OK"), "{head}");
    let published = bank(&d).await.get("/v1/keys").await;
    assert_eq!(
        serde_json::from_str::<Value>(keys_json).expect("keys.json"),
        published.json()
    );
    let work = tempfile::tempdir().expect("tempdir");
    // What a phone scans: the printed document's QR code (where the font is installed).
    let scanned = if printing_unavailable() {
        url.clone()
    } else {
        let keys = work.path().join("keys.json");
        std::fs::write(&keys, keys_json).expect("keys");
        let png = work.path().join("receipt.png");
        let out = permitgate(&[
            "receipt",
            "render",
            &text,
            "--keys",
            keys.to_str().expect("utf8"),
            "--out",
            png.to_str().expect("utf8"),
        ]);
        assert_success(&out);
        let scanned = decode_qr_png(&std::fs::read(&png).expect("png"));
        assert_eq!(scanned, url, "the paper's QR code is the receipt's link");
        scanned
    };

    // Temporary permits: the demo's (valid), and expired, not yet valid, foreign-key ones.
    let valid_token = sample(&d, "temp_permit_valid")["body"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let key = load_signing_key(&d.dir.join("keys/temp-permit.key")).expect("issuing key");
    let number = TravelPermitNo::parse("H12345678").expect("tp");
    let now = OffsetDateTime::now_utc();
    let token = |at: OffsetDateTime, key: &ed25519_dalek::SigningKey| {
        temp_permit::issue(&number, "CHAN Tai Man", Reason::Lost, at, key)
            .expect("token")
            .0
    };
    let expired = token(now - Duration::days(8), &key);
    let not_yet = token(now + Duration::hours(1), &key);
    let foreign = token(now, &generate_signing_key());
    // One issued and revoked through the demo's origin: its revocation list, served beside
    // keys.json, lets the page refuse it.
    let revoked = {
        let pki = d.dir.join("pki");
        let mut desk = Client::connect(
            d.origin,
            &pki.join("ca.crt"),
            Some((
                &pki.join("authority/desk-01.crt"),
                &pki.join("authority/desk-01.key"),
            )),
        )
        .await
        .expect("desk connects");
        let lost = sample(&d, "travel_permit_lost_status")["body"]["number"].clone();
        let r = crate::common::post_idempotent(
            &mut desk,
            "/v1/authority/temporary-permits",
            Some("page-revoked"),
            &json!({"travel_permit": lost, "name": "CHAN Tai Man", "reason": "lost", "officer": "E1"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let issued = r.json();
        let id = issued["permit_id"].as_str().expect("id");
        desk.post_json(
            &format!("/v1/authority/temporary-permits/{id}/revocation"),
            &json!({"officer": "E1"}),
        )
        .await
        .assert_ok("revoke");
        issued["token"].as_str().expect("token").to_owned()
    };

    let vectors: Value =
        serde_json::from_str(include_str!("../vectors/numbers.json")).expect("vectors");
    let names: Value = serde_json::from_str(include_str!("../vectors/names.json")).expect("names");
    // docs/receipts.md's format-3 vector, with its key.
    let doc = include_str!("../../docs/receipts.md");
    let vector = doc
        .lines()
        .find_map(|l| l.strip_prefix("receipt PGR3:"))
        .map(|r| format!("PGR3:{r}"))
        .expect("the format-3 vector");
    let vector_keys = json!({"keys": [{
        "id": "39833a149ece5611", "use": "receipt", "algorithm": "Ed25519",
        "public_key": "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7"}]});
    let shot = work.path().join("phone.png");
    let input = json!({
        "page": page,
        "screenshot": shot,
        "vectors": {"travel": vectors["travel"], "residence": vectors["residence"], "names": names["names"]},
        "vector": {"receipt": vector, "keys": vector_keys, "travel_permit": "H12345678",
                   "residence_permit": "810000199001011230",
                   "other_residence_permit": "810000199001011249"},
        "cases": [
            {"name": "scanned", "url": scanned, "screenshot": true, "numbers": [
                {"travel_permit": tp, "residence_permit": rp},
                {"travel_permit": format!(" {} ", tp.to_lowercase()), "residence_permit": rp},
                {"travel_permit": tp, "residence_permit": other_rp},
                {"travel_permit": tp, "residence_permit": "810000199002301230"},
                // Typing slips, each named: a letter O for a zero, a space inside, nothing
                // typed, two digits swapped (a well-formed other number).
                {"travel_permit": typo_o, "residence_permit": rp},
                {"travel_permit": tp, "residence_permit": typo_space},
                {"travel_permit": "", "residence_permit": rp},
                {"travel_permit": swapped, "residence_permit": rp},
            ]},
            {"name": "pasted", "paste": text},
            {"name": "altered", "paste": altered(&text)},
            {"name": "not_a_receipt", "paste": "hello"},
            {"name": "temp_valid", "paste": valid_token},
            {"name": "temp_expired", "paste": expired},
            {"name": "temp_not_yet_valid", "paste": not_yet},
            {"name": "temp_foreign_key", "paste": foreign},
            {"name": "temp_revoked", "paste": revoked},
        ],
    });
    let input_path = work.path().join("input.json");
    std::fs::write(&input_path, serde_json::to_vec(&input).expect("json")).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/verify_page.mjs");
    // The demo is a process of its own: waiting here blocks nothing it needs.
    let out = std::process::Command::new(&node)
        .arg(&script)
        .arg(&input_path)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "the browser driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("driver output");
    let case = |name: &str| seen["cases"][name].clone();

    // The scanned link: genuine, linked, in both languages, with the demo's authority and
    // the holder's name; fits a phone's width.
    let c = case("scanned");
    assert_eq!(
        (c["verdict"].as_str(), c["result"].as_str()),
        (Some("genuine"), Some("linked")),
        "{c}"
    );
    let shown = c["text"].as_str().unwrap_or_default();
    // When it was checked, in Beijing time, as people write it.
    let checked_at = permitgate::receipt::read(&text)
        .expect("the receipt reads")
        .checked_at;
    let (when_zh, when_en) = permitgate::day::for_people(checked_at);
    for want in [
        when_zh.as_str(),
        when_en.as_str(),
        "凭证真实有效",
        "Genuine record",
        "关联一致",
        "Linked",
        "有效",
        "valid",
        permitgate::demo::DEMO_AUTHORITY.0,
        permitgate::demo::DEMO_AUTHORITY.1,
        "陳大文 CHAN Tai Man",
        // The holder's travel permit by its name (a Hong Kong resident's here).
        "港澳居民来往内地通行证",
        // Who asked, by the names the partner registry gives it, and its id.
        "演示银行（非真实机构） Demo Bank (not a real bank) (bank)",
    ] {
        assert!(shown.contains(want), "{want:?} not shown: {shown}");
    }
    assert!(
        !shown.contains(&tp) && !shown.contains(&rp),
        "no numbers shown: {shown}"
    );
    assert_eq!(c["overflows"], false, "fits a 360 px wide phone");
    assert_eq!(c["focused"], "verdict-title", "the verdict takes the focus");
    let matches: Vec<&str> = c["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|n| n["match"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        matches,
        ["match", "match", "mismatch", "invalid", "invalid", "invalid", "invalid", "mismatch"],
        "{c}"
    );
    let said = |i: usize| {
        c["checks"][i]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        said(4).contains("第4个字符")
            && said(4).contains("the letter O")
            && said(4).contains("digit 0"),
        "names the character and where: {}",
        said(4)
    );
    assert!(
        said(5).contains("第7个字符") && said(5).contains("a space"),
        "{}",
        said(5)
    );
    assert!(
        said(6).contains("未填写") && said(6).contains("is empty"),
        "{}",
        said(6)
    );
    // A well-formed number that does not match: first the numbers typed, grouped.
    let grouped = |n: &str| {
        n.chars()
            .collect::<Vec<_>>()
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        said(7).contains("请先核对您输入的号码") && said(7).contains(&grouped(&swapped)),
        "{}",
        said(7)
    );
    let bad_date = c["checks"][3]["text"].as_str().unwrap_or_default();
    assert!(
        bad_date.contains("居住证号码") && bad_date.contains("birth date"),
        "names the field and the rule: {bad_date}"
    );
    assert!(c["checks"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("号码一致"));

    let pasted = case("pasted");
    assert_eq!(
        (pasted["verdict"].as_str(), pasted["result"].as_str()),
        (Some("genuine"), Some("linked"))
    );
    let verdicts = |name: &str| {
        case(name)["verdict"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(verdicts("altered"), "bad_signature");
    assert!(case("altered")["text"]
        .as_str()
        .unwrap_or_default()
        .contains("不是真实凭证"));
    assert_eq!(verdicts("not_a_receipt"), "malformed");
    assert_eq!(verdicts("temp_valid"), "valid");
    assert_eq!(verdicts("temp_expired"), "expired");
    assert_eq!(verdicts("temp_not_yet_valid"), "not_yet_valid");
    assert_eq!(verdicts("temp_foreign_key"), "unknown_key");
    assert_eq!(verdicts("temp_revoked"), "revoked");
    let temp = case("temp_valid")["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        temp.contains("临时通行证有效") && temp.contains("revocation list checked"),
        "{temp}"
    );
    let gone = case("temp_revoked")["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        gone.contains("临时通行证已撤销") && gone.contains("Revocation list issued"),
        "{gone}"
    );
    assert!(!temp.contains("H12345678"), "masked: {temp}");

    assert_eq!(
        seen["vector"],
        json!({"status": "genuine", "result": "linked", "holder_name": "陳大文",
               "partner_name": ["示例银行", "Example Bank"],
               "checked_at": 1_795_593_600, "match": "match", "other": "mismatch"})
    );

    // Nothing left the page but its own files, keys.json and the revocation list.
    let allowed: Vec<String> = [
        "",
        "verify.js",
        "verify.css",
        "keys.json",
        "temp-permit-revocations.bin",
    ]
    .iter()
    .map(|f| format!("{page}{f}"))
    .collect();
    let requests = seen["requests"].as_array().expect("requests");
    assert!(!requests.is_empty());
    for r in requests {
        let r = r.as_str().unwrap_or_default();
        let without_fragment = r.split('#').next().unwrap_or_default();
        assert!(
            allowed.iter().any(|a| a == without_fragment) || r == "about:blank",
            "the page requested {r}"
        );
    }
    assert_eq!(
        seen["console_errors"],
        json!([]),
        "no script errors or CSP violations"
    );
    assert_eq!(seen["unlabelled"], json!([]), "every field has a label");

    // The page's number rules are the gateway's.
    for kind in ["travel", "residence"] {
        let inputs = vectors[kind].as_array().expect("vectors");
        let page_says = seen["vectors"][kind].as_array().expect("page verdicts");
        assert_eq!(inputs.len(), page_says.len());
        for (input, page_says) in inputs.iter().zip(page_says) {
            let input = input.as_str().expect("string");
            assert_eq!(page_says, &gateway_verdict(kind, input), "{kind} {input:?}");
        }
    }

    // The page's name rule is the gateway's.
    let inputs = names["names"].as_array().expect("names");
    let page_says = seen["vectors"]["names"].as_array().expect("page verdicts");
    assert_eq!(inputs.len(), page_says.len());
    for (input, page_says) in inputs.iter().zip(page_says) {
        let input = input.as_str().expect("string");
        assert_eq!(page_says, &gateway_name_verdict(input), "name {input:?}");
    }

    // The phone screenshot: a PNG at the phone's width (360 CSS px at 2x).
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    let width = u32::from_be_bytes(png[16..20].try_into().expect("width"));
    assert_eq!(width, 720);
    if let Some(path) = std::env::var_os("PERMITGATE_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("copy");
    }
}
