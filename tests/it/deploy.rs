//! deploy/kubernetes/ checked against the Kubernetes API types (k8s-openapi): every
//! document deserialises into its kind and serialises back to exactly what was written,
//! so a misspelt or misplaced field (which Kubernetes would drop or refuse) fails here.
//! Cross-checks: the ConfigMap's gateway.toml is a valid config whose ports are the
//! container's; probes use the gateway's probe paths; selectors select the pods.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of every manifest file, by file.
fn documents() -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir()).expect("deploy/kubernetes") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let docs = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}")))
            .filter(|v| !v.is_null())
            .collect();
        out.insert(name, docs);
    }
    out
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
    let docs = documents();
    let mut deployment = None;
    let mut services = Vec::new();
    let mut config = None;
    let mut monitor = None;
    let mut kinds = Vec::new();
    for (file, list) in &docs {
        for doc in list {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            kinds.push(kind.clone());
            match kind.as_str() {
                "Deployment" => deployment = Some(round_trip::<Deployment>(file, doc)),
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
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    for want in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
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
    let toml = config
        .data
        .as_ref()
        .and_then(|d| d.get("gateway.toml"))
        .expect("gateway.toml");
    let parsed =
        permitgate::config::Config::parse(toml, Path::new("/etc/permitgate/config/gateway.toml"))
            .unwrap_or_else(|e| panic!("the ConfigMap's gateway.toml: {e}"));
    let deployment = deployment.expect("Deployment");
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
    for file in parsed
        .tls
        .files()
        .chain(parsed.snapshot.publisher_keys.iter().map(PathBuf::as_path))
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

#[test]
fn kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(dir().join("kustomization.yaml")).expect("kustomization");
    let k: Value = serde_yaml::from_str(&text).expect("yaml");
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files: Vec<String> = documents().into_keys().collect();
    for f in &files {
        assert!(
            listed.contains(&f.as_str()),
            "{f} is not in kustomization.yaml"
        );
    }
    for l in &listed {
        assert!(
            files.iter().any(|f| f == l),
            "kustomization.yaml lists a missing {l}"
        );
    }
}
