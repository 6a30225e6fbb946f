//! The one helper every component registers its metric families with (linkerd2-proxy's
//! way: each component's `register(&Registry)` beside its own code). A leaf: it imports
//! nothing of the crate. The registry is assembled by the composition root
//! (src/server/metrics.rs).

use prometheus::core::Collector;
use prometheus::Registry;

/// Registers `metric` in `registry` and returns it.
pub fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<C>,
) -> C {
    // Metric definitions are constants of the code; a failure (bad name, a name registered
    // twice) is a programming error that the unit tests catch.
    let metric = metric.unwrap_or_else(|e| panic!("metric definition: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    metric
}
