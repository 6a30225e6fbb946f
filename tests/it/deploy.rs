//! deploy/kubernetes/ checked against the Kubernetes API types (k8s-openapi): every
//! document deserialises into its kind and serialises back to exactly what was written,
//! so a misspelt or misplaced field (which Kubernetes would drop or refuse) fails here.
//! Cross-checks: the ConfigMap's gateway.toml and partner registry are a valid config
//! whose ports are the container's, naming every scope, the verifier page and the
//! authority; probes use the gateway's probe paths; selectors select the pods; the
//! PrometheusRule is config/prometheus/alerts.yml.
//!
//! Every manifest file is also validated by `kubernetes-validate --strict` (PyPI) against
//! the oldest Kubernetes the manifests support, and every kustomization (the base, each
//! component, through overlays/all-components) is built with `kubectl kustomize` and its
//! output validated the same way. `.ci/run` installs kubernetes-validate and requires both
//! (PERMITGATE_REQUIRE_KUBERNETES_VALIDATE, PERMITGATE_REQUIRE_KUBECTL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The oldest Kubernetes the manifests are for (the preStop sleep action, native
/// sidecars and the StatefulSet's PVC retention policy are on by default from 1.30).
const KUBERNETES: &str = "1.30.0";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// A directory holding a kustomization, what it lists as resources and components, and
/// its patches (partial objects, validated only as built), relative to it.
struct Kustomization {
    dir: PathBuf,
    listed: Vec<String>,
    patches: Vec<String>,
}

/// Every kustomization under deploy/kubernetes.
fn kustomizations() -> Vec<Kustomization> {
    let mut out = Vec::new();
    let mut todo = vec![dir()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("deploy dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            }
        }
        let k = d.join("kustomization.yaml");
        if let Ok(text) = std::fs::read_to_string(&k) {
            let v: Value = serde_yaml::from_str(&text).expect("kustomization yaml");
            let listed = ["resources", "components"]
                .iter()
                .flat_map(|f| v[f].as_array().cloned().unwrap_or_default())
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            let patches = (v["patches"].as_array().into_iter().flatten())
                .filter_map(|p| p["path"].as_str().map(str::to_owned))
                .collect();
            out.push(Kustomization {
                dir: d,
                listed,
                patches,
            });
        }
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// Every manifest file (not kustomizations, not patches).
fn manifest_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = kustomizations()
        .iter()
        .flat_map(|k| k.listed.iter().map(|l| k.dir.join(l)))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The YAML documents of `text`.
fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every document of every manifest file, by file.
fn documents() -> BTreeMap<String, Vec<Value>> {
    manifest_files()
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(dir())
                .unwrap_or(&path)
                .display()
                .to_string();
            let text = std::fs::read_to_string(&path).expect("read");
            let docs = yaml_documents(&text, &name);
            (name, docs)
        })
        .collect()
}

/// Drops nulls and empty objects, which serialisation leaves out or in freely.
fn normalised(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalised(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalised).collect()),
        other => other.clone(),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(file: &str, doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: not a valid {}: {e}", doc["kind"]));
    let back = serde_json::to_value(&typed).expect("serialise");
    assert_eq!(
        normalised(&back),
        normalised(doc),
        "{file}: fields Kubernetes does not know (or wrong types) in {}",
        doc["kind"]
    );
    typed
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: Value,
    spec: ServiceMonitorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: Selector,
    endpoints: Vec<MonitorEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct MonitorEndpoint {
    port: String,
    path: String,
    interval: String,
}

#[test]
fn manifests_are_valid_kubernetes_objects_that_fit_together() {
    check_objects(&documents());
}

/// The objects of `docs` (manifest files, or a kustomize build) are valid and fit.
fn check_objects(docs: &BTreeMap<String, Vec<Value>>) {
    let mut deployment = None;
    let mut services = Vec::new();
    let mut config = None;
    let mut monitor = None;
    let mut kinds = Vec::new();
    for (file, list) in docs {
        for doc in list {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            kinds.push(kind.clone());
            match kind.as_str() {
                "StatefulSet" => deployment = Some(round_trip::<StatefulSet>(file, doc)),
                "Service" => services.push(round_trip::<Service>(file, doc)),
                "ConfigMap" => config = Some(round_trip::<ConfigMap>(file, doc)),
                "Secret" => {
                    round_trip::<Secret>(file, doc);
                }
                "PodDisruptionBudget" => {
                    round_trip::<PodDisruptionBudget>(file, doc);
                }
                "HorizontalPodAutoscaler" => {
                    round_trip::<HorizontalPodAutoscaler>(file, doc);
                }
                "ServiceMonitor" => {
                    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                    monitor = Some(
                        serde_json::from_value::<ServiceMonitor>(doc.clone())
                            .unwrap_or_else(|e| panic!("{file}: ServiceMonitor: {e}")),
                    );
                }
                "PrometheusRule" => {
                    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                    let alerts: Value = serde_yaml::from_str(&alerts_yml()).expect("alerts");
                    assert_eq!(
                        doc["spec"], alerts,
                        "{file}: not config/prometheus/alerts.yml"
                    );
                }
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    for want in [
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "Secret",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "no {want} in deploy/kubernetes"
        );
    }

    // The gateway's config in the ConfigMap parses, and the pod exposes its ports.
    let config = config.expect("ConfigMap");
    let data = config.data.clone().unwrap_or_default();
    let toml = data.get("gateway.toml").expect("gateway.toml");
    // The ConfigMap's files, where the config finds its registry beside it.
    let mounted = tempfile::tempdir().expect("tempdir");
    for (name, text) in &data {
        std::fs::write(mounted.path().join(name), text).expect("write");
    }
    let parsed = permitgate::config::Config::parse(toml, &mounted.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("the ConfigMap's gateway.toml: {e}"));
    assert!(
        parsed
            .receipts
            .verify_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        "receipts' QR codes need the verifier page's address"
    );
    assert!(
        parsed.receipts.authority.is_some(),
        "receipts name who signs"
    );
    assert!(parsed
        .audit
        .as_ref()
        .is_some_and(|a| a.checkpoints.is_some()));
    let scopes: std::collections::HashSet<_> = parsed
        .partners
        .iter()
        .flat_map(|p| p.scopes.iter())
        .collect();
    use strum::VariantArray;
    for scope in permitgate::partner::Scope::VARIANTS {
        assert!(
            scopes.contains(scope),
            "no partner in the ConfigMap holds {scope:?}"
        );
    }
    let deployment = deployment.expect("StatefulSet");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    let c = &pod.containers[0];
    let port = |name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    };
    assert_eq!(
        port("partners"),
        Some(i32::from(parsed.server.listen.port()))
    );
    assert_eq!(
        port("metrics"),
        parsed.server.metrics_listen.map(|a| i32::from(a.port()))
    );
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(
        args,
        ["serve", "--config", "/etc/permitgate/config/gateway.toml"]
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/healthz"));
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    assert!(
        grace as u128 * 1000 > parsed.server.drain_timeout.as_millis() + 5000,
        "terminationGracePeriodSeconds must outlast the drain and the preStop pause"
    );
    // Every file the config names is mounted.
    let mounts: Vec<String> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    let audit = parsed.audit.as_ref().expect("[audit]");
    for file in parsed
        .tls
        .files()
        .chain(parsed.snapshot.publisher_keys.iter().map(PathBuf::as_path))
        .chain([audit.dir.as_path()])
        .chain(
            audit
                .checkpoints
                .iter()
                .flat_map(|c| [c.key.as_path(), c.dir.as_path()]),
        )
    {
        assert!(
            mounts.iter().any(|m| file.starts_with(m)),
            "{} is not on a mounted volume",
            file.display()
        );
    }

    // Selectors select the pods.
    let pod_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for s in &services {
        let selector = s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    }
    let monitor = monitor.expect("ServiceMonitor");
    let metrics_service = services
        .iter()
        .find(|s| {
            let labels = s.metadata.labels.clone().unwrap_or_default();
            monitor
                .spec
                .selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .expect("the ServiceMonitor selects no Service");
    let ports: Vec<String> = metrics_service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| p.name.clone())
        .collect();
    for e in &monitor.spec.endpoints {
        assert!(
            ports.contains(&e.port),
            "ServiceMonitor port {} is not on the Service",
            e.port
        );
        assert_eq!(e.path, "/metrics");
    }
}

/// The alert rules, as the PrometheusRule carries them.
fn alerts_yml() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus/alerts.yml"),
    )
    .expect("alerts.yml")
}

/// The PrometheusRule for `alerts`: its rules under `spec`, the comments kept.
fn prometheus_rule(alerts: &str) -> String {
    let mut out = String::from(
        "# Generated from config/prometheus/alerts.yml (tests/it/deploy.rs; run it with\n\
         # PERMITGATE_WRITE_PROMETHEUSRULE=1 to write it again): edit that file, not this one.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: permitgate\n  labels: {app.kubernetes.io/name: permitgate}\n\
         spec:\n",
    );
    for line in alerts.lines() {
        if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_prometheus_rule_is_the_alert_rules() {
    let path = dir().join("components/prometheus-operator/prometheusrule.yaml");
    let want = prometheus_rule(&alerts_yml());
    if std::env::var_os("PERMITGATE_WRITE_PROMETHEUSRULE").is_some() {
        std::fs::write(&path, &want).expect("write");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is not generated from alerts.yml: run this test with PERMITGATE_WRITE_PROMETHEUSRULE=1",
        path.display()
    );
}

/// Every rule has a runbook in docs/operations.md (a heading its runbook_url names) and a
/// promtool unit test.
#[test]
fn every_alert_has_a_runbook_and_a_test() {
    let alerts: Value = serde_yaml::from_str(&alerts_yml()).expect("alerts");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ops = std::fs::read_to_string(root.join("docs/operations.md")).expect("operations.md");
    let anchors: Vec<String> = ops
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let tests = std::fs::read_to_string(root.join("config/prometheus/alerts_test.yml"))
        .expect("alerts_test.yml");
    let mut rules = 0;
    for group in alerts["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert");
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no runbook_url"));
            let anchor = url
                .split_once("docs/operations.md#")
                .map(|(_, a)| a)
                .unwrap_or_else(|| panic!("{name}: {url} is not into docs/operations.md"));
            assert!(
                anchors.iter().any(|a| a == anchor),
                "{name}: no heading for #{anchor} in docs/operations.md"
            );
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "{name} has no promtool test in alerts_test.yml"
            );
            rules += 1;
        }
    }
    assert!(rules >= 15, "{rules}");
}

#[test]
fn every_manifest_is_listed_and_every_listed_file_exists() {
    for k in kustomizations() {
        let (d, listed) = (&k.dir, k.listed.iter().chain(&k.patches));
        for l in listed.clone() {
            assert!(d.join(l).exists(), "{}: lists a missing {l}", d.display());
        }
        for entry in std::fs::read_dir(d).expect("dir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                assert!(
                    listed.clone().any(|l| l == name),
                    "{} is in no kustomization",
                    path.display()
                );
            }
        }
    }
}

fn tool(name: &str, required_by: &str, install: &str) -> Option<PathBuf> {
    crate::common::optional_tool(name, required_by, install)
}

/// `kubernetes-validate --strict` against [`KUBERNETES`]; the CRDs' kinds
/// (monitoring.coreos.com) have no schema there and are checked by this file's own types.
fn kubernetes_validate(validate: &Path, file: &Path) {
    let out = Command::new(validate)
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}:\n{said}", file.display());
    for line in said.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            line.contains("monitoring.coreos.com/v1"),
            "{}: {line}",
            file.display()
        );
    }
}

#[test]
fn every_manifest_and_every_build_passes_kubernetes_validate() {
    let Some(validate) = tool(
        "kubernetes-validate",
        "PERMITGATE_REQUIRE_KUBERNETES_VALIDATE",
        "pip install kubernetes-validate",
    ) else {
        return;
    };
    for file in manifest_files() {
        kubernetes_validate(&validate, &file);
    }
    let Some(kubectl) = tool(
        "kubectl",
        "PERMITGATE_REQUIRE_KUBECTL",
        "kubectl (kustomize)",
    ) else {
        return;
    };
    let built = tempfile::tempdir().expect("tempdir");
    // The base as `kubectl apply -k deploy/kubernetes` applies it, and every component.
    for (name, at) in [
        ("base", dir()),
        ("all-components", dir().join("overlays/all-components")),
    ] {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&at)
            .output()
            .expect("run kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize {}:\n{}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let file = built.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &out.stdout).expect("write");
        kubernetes_validate(&validate, &file);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let docs: BTreeMap<String, Vec<Value>> =
            [(name.to_owned(), yaml_documents(&text, name))].into();
        let kinds: Vec<&str> = docs[name]
            .iter()
            .filter_map(|d| d["kind"].as_str())
            .collect();
        if name == "base" {
            // A plain cluster has no Prometheus Operator.
            assert!(
                !kinds
                    .iter()
                    .any(|k| k.starts_with("Service") && *k != "Service"),
                "{kinds:?}"
            );
            assert!(!kinds.contains(&"PrometheusRule"), "{kinds:?}");
            // Nor kubelets that allow an unsafe sysctl.
            assert!(!text.contains("sysctls"), "the base sets no sysctl");
        } else {
            check_objects(&docs);
            let set = docs[name]
                .iter()
                .find(|d| d["kind"] == "StatefulSet")
                .expect("StatefulSet");
            let sidecar = &set["spec"]["template"]["spec"]["initContainers"][0];
            assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
            assert_eq!(sidecar["args"][0], "audit");
            // The syn-queue component adds to the pod's security context, keeping the rest.
            let pod = &set["spec"]["template"]["spec"]["securityContext"];
            assert_eq!(pod["runAsNonRoot"], true);
            assert_eq!(pod["sysctls"][0]["name"], "net.core.somaxconn");
            assert_eq!(pod["sysctls"][0]["value"], "65535");
        }
    }
}
