//! Clients generated from docs/openapi.yaml, as partners' engineers would make them
//! (`openapi-python-client` from PyPI; `openapi-typescript` with `openapi-fetch` from npm,
//! compiled by `tsc --strict`), run against a gateway over mTLS: the contract is precise
//! enough for generators, and what they generate reads the gateway's answers and problems
//! as they are.

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

/// What the partner writes with the generated TypeScript types (docs/partners.md §7):
/// `tsc --strict` checks it against them before it runs.
const TYPESCRIPT: &str = r#"
import { readFileSync } from "node:fs";
import createClient from "openapi-fetch";
import { Agent, setGlobalDispatcher } from "undici";
import type { paths, components } from "./schema.js";

const [url, ca, cert, key, tp, rp] = process.argv.slice(2);
// Node's own fetch reads undici's global dispatcher: every request carries the certificate.
setGlobalDispatcher(new Agent({ connect: { ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key) } }));
const client = createClient<paths>({ baseUrl: url });

const { data, error } = await client.POST("/v1/link-checks", { body: { travel_permit: tp, residence_permit: rp } });
if (error || !data) throw new Error(JSON.stringify(error));
const result: components["schemas"]["LinkResult"] = data.result;
console.log("result", result, data.travel_permit.status);

const typo = await client.POST("/v1/link-checks", { body: { travel_permit: tp.slice(0, 3) + "O" + tp.slice(4), residence_permit: rp } });
const problem: components["schemas"]["Problem"] | undefined = typo.error;
console.log("problem", typo.response.status, problem?.type, problem?.field, problem?.rule);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_generated_from_the_contract_talks_to_the_gateway() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = repo.join("tests/browser/node_modules");
    if !modules.join("openapi-typescript").exists() {
        assert!(
            std::env::var_os("PERMITGATE_REQUIRE_CLIENT_GENERATORS").is_none(),
            "npm ci --prefix tests/browser (openapi-typescript, openapi-fetch, typescript)"
        );
        eprintln!("SKIPPED: npm ci --prefix tests/browser");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).expect("node_modules");
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).expect("package.json");
    std::fs::write(
        dir.join("tsconfig.json"),
        r#"{"compilerOptions": {"target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "strict": true, "skipLibCheck": true, "outDir": "out", "types": ["node"]}, "files": ["client.ts"]}"#,
    )
    .expect("tsconfig");
    std::fs::write(dir.join("client.ts"), TYPESCRIPT).expect("client.ts");
    let bin = |name: &str| modules.join(".bin").join(name).display().to_string();
    run_in(
        dir,
        &bin("openapi-typescript"),
        &[
            repo.join("docs/openapi.yaml").as_os_str(),
            "-o".as_ref(),
            "schema.d.ts".as_ref(),
        ],
    );
    run_in(dir, &bin("tsc"), &["-p".as_ref(), "tsconfig.json".as_ref()]);

    let gw = TestGateway::start().await;
    let s = gw.sample("linked_pair").clone();
    let (crt, key) = gw.cert_paths("bank");
    let args: Vec<std::ffi::OsString> = vec![
        "out/client.js".into(),
        format!("https://localhost:{}", gw.addr().port()).into(),
        gw.demo.pki.ca_cert().into(),
        crt.into(),
        key.into(),
        s.body["travel_permit"].as_str().expect("tp").into(),
        s.body["residence_permit"].as_str().expect("rp").into(),
    ];
    let dir = dir.to_owned();
    let printed = tokio::task::spawn_blocking(move || {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_in(&dir, "node", &args)
    })
    .await
    .expect("join");
    assert!(printed.contains("result linked valid"), "{printed}");
    assert!(
        printed.contains(
            "problem 422 urn:permitgate:problem:invalid-document-number travel_permit characters"
        ),
        "{printed}"
    );
}

/// Runs `program` in `dir`; what it said, or the test fails with it.
fn run_in(dir: &std::path::Path, program: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program}: {said}");
    said
}
