//! Per-partner rate limits over real mTLS: a partner over its bucket gets 429 with
//! Retry-After while other partners are answered as usual; the bucket refills with the
//! (injected) clock.

use std::sync::Arc;

use crate::common::{config_edit, Options, TestGateway};
use permitgate::clock::ManualClock;

const T0: i64 = 1_795_000_000;

async fn limited_gateway(limit: &str) -> (TestGateway, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_unix(T0));
    let gw = TestGateway::start_with(Options {
        clock: Some(clock.clone()),
        edit_config: vec![{
            let limit = config_edit::value(limit);
            config_edit::partner("bank", move |p| {
                p.insert("rate_limit".into(), limit);
            })
        }],
        ..Options::default()
    })
    .await;
    (gw, clock)
}

#[tokio::test]
async fn a_partner_over_its_rate_gets_429_and_others_are_unaffected() {
    let (gw, clock) = limited_gateway("{ per_second = 2, burst = 3 }").await;
    let link = gw.sample("linked_pair").clone();
    let status = gw.sample("travel_permit_lost_status").clone();
    let mut bank = gw.client("bank").await;
    let mut gate = gw.client("rail-gate").await;

    for i in 0..3 {
        assert_eq!(
            bank.post_json(&link.path, &link.body).await.status,
            200,
            "request {i} is within the burst"
        );
    }
    let refused = bank.post_json(&link.path, &link.body).await;
    let p = refused.problem(429, "rate-limited");
    assert_eq!(refused.headers["retry-after"], "1");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("bank") && detail.contains('2'), "{detail}");
    // Every route a partner calls draws on the same bucket; probes never do.
    assert_eq!(bank.post_json(&status.path, &status.body).await.status, 429);
    assert_eq!(bank.get("/healthz").await.status, 200);

    // The flooding partner does not consume anyone else's allowance.
    for _ in 0..20 {
        assert_eq!(gate.post_json(&status.path, &status.body).await.status, 200);
    }

    // Half a second refills one token at 2/s; the manual clock moves whole seconds.
    clock.set_unix(T0 + 1);
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 429);

    gw.wait_metric(
        "permitgate_requests_total{outcome=\"rate_limited\",partner=\"bank\",route=\"link_check\"}",
        2.0,
    )
    .await;
    gw.wait_metric(
        "permitgate_requests_total{outcome=\"ok\",partner=\"rail-gate\",route=\"document_status\"}",
        20.0,
    )
    .await;
}

#[tokio::test]
async fn retry_after_says_how_long_a_slow_refill_takes() {
    // One request every ten seconds: after the burst, the next token is 10 s away.
    let (gw, clock) = limited_gateway("{ per_second = 0.1, burst = 1 }").await;
    let link = gw.sample("linked_pair").clone();
    let mut bank = gw.client("bank").await;
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
    let r = bank.post_json(&link.path, &link.body).await;
    r.problem(429, "rate-limited");
    assert_eq!(r.headers["retry-after"], "10");
    clock.set_unix(T0 + 4);
    let r = bank.post_json(&link.path, &link.body).await;
    assert_eq!(r.headers["retry-after"], "6");
    clock.set_unix(T0 + 10);
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
}

/// A request is charged what it costs: one per check, one more per receipt signed. A
/// batch of 100 checks with receipts is 200 tokens, not one: the partner's next request
/// waits until they are paid, and is told how long.
#[tokio::test]
async fn a_batch_is_charged_its_checks_and_receipts() {
    let (gw, clock) = limited_gateway("{ per_second = 10, burst = 10 }").await;
    let link = gw.sample("linked_pair").clone();
    let mut bank = gw.client("bank").await;
    let mut item = link.body.clone();
    item["receipt"] = serde_json::json!(true);
    let batch = serde_json::json!({ "checks": vec![item; 100] });
    let r = bank.post_json("/v1/link-checks:batch", &batch).await;
    assert_eq!(r.status, 200, "a full bucket lets one batch through");
    assert_eq!(
        r.json()["results"].as_array().map(Vec::len),
        Some(100),
        "answered whole"
    );
    // 200 tokens at 10 a second: 20 seconds of debt, less the 10 the bucket held.
    let refused = bank.post_json(&link.path, &link.body).await;
    refused.problem(429, "rate-limited");
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((18..=20).contains(&wait), "Retry-After {wait}");
    clock.set_unix(T0 + 10);
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 429);
    clock.set_unix(T0 + 21);
    assert_eq!(bank.post_json(&link.path, &link.body).await.status, 200);
}
