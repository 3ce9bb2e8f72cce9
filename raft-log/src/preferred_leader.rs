//! The preferred-leader policy (`preferredLeaderIds`): a leader that is not preferred hands
//! leadership to a preferred peer once that peer has caught up.
//!
//! It reads the engine's [`Metrics`] and calls [`Engine::transfer_leader`]; the engine knows
//! nothing of the policy.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::engine::driver::Engine;
use crate::types::{Metrics, PeerProgress, Role};

/// How far behind (in entries) a preferred leader may be and still receive leadership.
const PREFERRED_LEADER_LAG_MAX: u64 = 1000;

/// How often the leader looks for a caught-up preferred peer.
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Every second on the leader: hand over to a caught-up preferred leader.
pub(crate) fn spawn(config: Arc<Config>, engine: Engine) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_PERIOD);
        loop {
            tick.tick().await;
            let metrics = engine.metrics();
            let Some(p) = candidate(&config, &metrics) else {
                continue;
            };
            let Some(peer) = config.peer(&p.id) else {
                continue;
            };
            tracing::info!(to = %p.id, lag = p.lag, "handing leadership to the preferred leader");
            if let Err(e) = engine.transfer_leader(peer.node_id).await {
                tracing::warn!(to = %p.id, error = %e, "preferred-leader transfer failed");
            }
        }
    })
}

/// The preferred peer to hand leadership to, if this node leads without being preferred.
fn candidate<'m>(config: &Config, metrics: &'m Metrics) -> Option<&'m PeerProgress> {
    let preferred = &config.preferred_leader_ids;
    if preferred.contains(&config.self_id) || metrics.role != Role::Leader {
        return None;
    }
    metrics.peers.iter().find(|p| {
        preferred.contains(&p.id) && p.match_index.is_some() && p.lag < PREFERRED_LEADER_LAG_MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(role: Role, peers: &[(&str, Option<u64>, u64)]) -> Metrics {
        Metrics {
            id: "n0".into(),
            role,
            term: 1,
            leader: Some("n0".into()),
            last_index: Some(2000),
            commit_index: Some(2000),
            applied_index: Some(2000),
            purged_index: None,
            peers: peers
                .iter()
                .map(|(id, match_index, lag)| PeerProgress {
                    id: (*id).into(),
                    match_index: *match_index,
                    lag: *lag,
                    contact_ms: Some(0),
                })
                .collect(),
            leader_contact_ms: Some(0),
        }
    }

    #[test]
    fn only_a_caught_up_preferred_peer_of_a_non_preferred_leader_is_chosen() {
        let peers = "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3";
        let mut config = Config::new("g", peers, "n0", "/tmp/unused").unwrap();
        config.preferred_leader_ids = vec!["n2".into()];
        let caught_up = metrics(
            Role::Leader,
            &[("n1", Some(2000), 0), ("n2", Some(1990), 10)],
        );
        assert_eq!(
            candidate(&config, &caught_up).map(|p| p.id.as_str()),
            Some("n2")
        );
        let behind = metrics(Role::Leader, &[("n2", Some(10), PREFERRED_LEADER_LAG_MAX)]);
        assert!(candidate(&config, &behind).is_none());
        let unknown = metrics(Role::Leader, &[("n2", None, 0)]);
        assert!(candidate(&config, &unknown).is_none());
        let follower = metrics(Role::Follower, &[("n2", Some(2000), 0)]);
        assert!(candidate(&config, &follower).is_none());
        config.preferred_leader_ids.push("n0".into());
        assert!(candidate(&config, &caught_up).is_none());
    }
}
