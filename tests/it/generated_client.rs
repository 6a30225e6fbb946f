//! A client generated from docs/openapi.yaml, as a partner's engineer would make one
//! (`openapi-python-client`, from PyPI), run against a gateway over mTLS: the contract is
//! precise enough for a generator, and what it generates reads the gateway's answers and
//! problems as they are.

use crate::common::{optional_tool, TestGateway};

/// What the partner writes with the generated package (docs/partners.md §7).
const SCRIPT: &str = r#"
import ssl, sys
from permitgate_client import Client
from permitgate_client.api.default import link_check, partner
from permitgate_client.models import LinkCheckRequestType0, LinkCheckResponse, LinkResult

url, ca, crt, key, tp, rp = sys.argv[1:]
tls = ssl.create_default_context(cafile=ca)
tls.load_cert_chain(crt, key)
client = Client(base_url=url, verify_ssl=tls)

answer = link_check.sync_detailed(client=client, body=LinkCheckRequestType0(travel_permit=tp, residence_permit=rp))
assert answer.status_code == 200, answer.content
assert isinstance(answer.parsed, LinkCheckResponse), answer.parsed
print("result", answer.parsed.result.value, answer.parsed.travel_permit.status.value)
assert answer.parsed.result == LinkResult.LINKED

typo = link_check.sync_detailed(client=client, body=LinkCheckRequestType0(travel_permit=tp[:3] + "O" + tp[4:], residence_permit=rp))
problem = typo.parsed
print("problem", typo.status_code, problem.type_.value, problem.field, problem.rule.value)

me = partner.sync(client=client)
print("partner", me.id, ",".join(s.value for s in me.scopes))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_contract_talks_to_the_gateway() {
    let Some(generator) = optional_tool(
        "openapi-python-client",
        "PERMITGATE_REQUIRE_CLIENT_GENERATORS",
        "pip install openapi-python-client",
    ) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let out = std::process::Command::new(&generator)
        .args(["generate", "--meta", "none", "--path"])
        .arg(&spec)
        .current_dir(work.path())
        .output()
        .expect("openapi-python-client");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generation failed: {said}");
    assert!(
        work.path()
            .join("permitgate_client/api/default/link_check.py")
            .exists(),
        "{said}"
    );

    let gw = TestGateway::start().await;
    let s = gw.sample("linked_pair").clone();
    let (crt, key) = gw.cert_paths("bank");
    let url = format!("https://localhost:{}", gw.addr().port());
    let args = [
        url,
        gw.demo.pki.ca_cert().display().to_string(),
        crt.display().to_string(),
        key.display().to_string(),
        s.body["travel_permit"].as_str().expect("tp").to_owned(),
        s.body["residence_permit"].as_str().expect("rp").to_owned(),
    ];
    let out = tokio::task::spawn_blocking({
        let dir = work.path().to_owned();
        move || {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(SCRIPT)
                .args(&args)
                .current_dir(dir)
                .output()
                .expect("python3")
        }
    })
    .await
    .expect("join");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("result linked valid"), "{printed}");
    assert!(
        printed.contains(
            "problem 422 urn:permitgate:problem:invalid-document-number travel_permit characters"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("partner bank link_check,document_status,receipt,receipt_verify"),
        "{printed}"
    );
}
