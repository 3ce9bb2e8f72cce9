//! What the HTTP handlers read (a leaf of `http/`).

use crate::metrics::BrokerMetrics;
use crate::service::BrokerService;

/// The metrics registry and the node's service.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub(crate) metrics: BrokerMetrics,
    pub(crate) service: BrokerService,
}
