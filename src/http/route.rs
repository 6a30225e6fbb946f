//! The route table: for every route, its path, method, scope, metric label and how it is
//! answered. One exhaustive `match` ([`Route::spec`]) holds it, so a new route cannot
//! be added without all four, and `Route::VARIANTS` (the metric label order) cannot
//! drift from the enum.

use http::Method;

use super::handlers::{self, Handler};
use crate::partner::Scope;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr, strum::EnumCount,
)]
#[strum(serialize_all = "snake_case")]
pub enum Route {
    LinkCheck,
    LinkCheckBatch,
    DocumentStatus,
    TempPermitVerify,
    TempPermitRevocations,
    ReceiptVerify,
    Keys,
    Partner,
    PartnerCertificate,
    Healthz,
    Readyz,
    ReplicationManifest,
    ReplicationObject,
    ReplicationRevocations,
    Unknown,
}

/// How a route's request is let in and answered once its head has been read.
#[derive(Clone, Copy)]
pub enum Answer {
    /// Liveness (`/healthz`): never shed, never audited, no partner needed.
    Alive,
    /// Readiness (`/readyz`), likewise.
    Ready,
    /// A partner's request: admitted (certificate, partner, scope, rate, ...), audited.
    Partner(Work),
    /// No such route: 404.
    None,
}

/// What a partner's admitted request does.
#[derive(Clone, Copy)]
pub enum Work {
    /// The published keyring, encoded once.
    Keys,
    /// The revocation list of temporary permits, held in memory (src/http/revocations.rs).
    Revocations,
    /// What the gateway knows of the calling partner (`GET /v1/partner`).
    Whoami,
    /// A replication long-poll for the next manifest: waits on the relay budget.
    RelayManifest,
    /// A replication object download: waits on the relay budget.
    RelayObject,
    /// A partner check: a slot, then the body, then this function; `heavy` for one whose
    /// cost grows with its body (a batch) or that waits on a disk (a renewal, recorded in
    /// the partner registry), answered on the work thread (src/work.rs), off the workers.
    Check { handler: Handler, heavy: bool },
}

pub enum Path {
    Exact(&'static [&'static str]),
    Prefix(&'static str),
    Any,
}

pub struct Spec {
    pub path: Path,
    pub method: Method,
    /// The scope a partner needs; `None` for routes open to every partner.
    pub scope: Option<Scope>,
    pub answer: Answer,
}

impl Route {
    pub fn spec(self) -> Spec {
        use Path::*;
        let check = |path, scope, handler, heavy| Spec {
            path,
            method: Method::POST,
            scope,
            answer: Answer::Partner(Work::Check { handler, heavy }),
        };
        let post = |path, scope, handler| check(path, Some(scope), handler, false);
        let get = |path, scope, work| Spec {
            path,
            method: Method::GET,
            scope,
            answer: Answer::Partner(work),
        };
        let probe = |path, answer| Spec {
            path,
            method: Method::GET,
            scope: None,
            answer,
        };
        match self {
            Route::LinkCheck => post(
                Exact(&["/v1/link-checks"]),
                Scope::LinkCheck,
                handlers::link_check,
            ),
            Route::LinkCheckBatch => check(
                Exact(&["/v1/link-checks:batch"]),
                Some(Scope::LinkCheck),
                handlers::link_check_batch,
                true,
            ),
            Route::DocumentStatus => post(
                Exact(&["/v1/document-status"]),
                Scope::DocumentStatus,
                handlers::document_status,
            ),
            Route::TempPermitVerify => post(
                Exact(&["/v1/temporary-permits/verify"]),
                Scope::TempPermit,
                handlers::temp_permit_verify,
            ),
            Route::TempPermitRevocations => get(
                Exact(&["/v1/temporary-permits/revocations"]),
                Some(Scope::TempPermit),
                Work::Revocations,
            ),
            Route::ReceiptVerify => post(
                Exact(&["/v1/receipts/verify"]),
                Scope::ReceiptVerify,
                handlers::receipt_verify,
            ),
            Route::Keys => get(Exact(&["/v1/keys"]), None, Work::Keys),
            Route::Partner => get(Exact(&["/v1/partner"]), None, Work::Whoami),
            // Any partner renews its own certificate: no scope.
            Route::PartnerCertificate => check(
                Exact(&["/v1/partner/certificate"]),
                None,
                handlers::partner_certificate,
                true,
            ),
            Route::Healthz => probe(Exact(&["/healthz"]), Answer::Alive),
            Route::Readyz => probe(Exact(&["/readyz"]), Answer::Ready),
            Route::ReplicationManifest => get(
                Exact(&["/v1/replication/manifest", "/v1/replication/manifest.json"]),
                Some(Scope::Replicate),
                Work::RelayManifest,
            ),
            Route::ReplicationObject => get(
                Prefix("/v1/replication/objects/"),
                Some(Scope::Replicate),
                Work::RelayObject,
            ),
            Route::ReplicationRevocations => get(
                Exact(&["/v1/replication/temp-permit-revocations.bin"]),
                Some(Scope::Replicate),
                Work::Revocations,
            ),
            Route::Unknown => probe(Any, Answer::None),
        }
    }

    /// The route a path names (`Unknown` if none).
    pub fn of(path: &str) -> Route {
        use strum::VariantArray;
        Route::VARIANTS
            .iter()
            .copied()
            .find(|r| match r.spec().path {
                Path::Exact(paths) => paths.contains(&path),
                Path::Prefix(prefix) => path.starts_with(prefix),
                Path::Any => true,
            })
            .unwrap_or(Route::Unknown)
    }

    /// Metric label and log field.
    pub fn label(self) -> &'static str {
        self.into()
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_path_finds_its_own_route() {
        for &route in Route::VARIANTS {
            match route.spec().path {
                Path::Exact(paths) => {
                    for p in paths {
                        assert_eq!(Route::of(p), route, "{p}");
                    }
                }
                Path::Prefix(prefix) => assert_eq!(Route::of(&format!("{prefix}x")), route),
                Path::Any => assert_eq!(route, Route::Unknown),
            }
        }
        assert_eq!(Route::of("/v1/link-checks/"), Route::Unknown);
        assert_eq!(Route::of("/v1/replication/objects"), Route::Unknown);
    }

    #[test]
    fn labels_are_distinct_and_indices_follow_the_variants() {
        let labels: std::collections::HashSet<_> =
            Route::VARIANTS.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Route::VARIANTS.len());
        for (i, r) in Route::VARIANTS.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Route::LinkCheckBatch.label(), "link_check_batch");
    }
}
