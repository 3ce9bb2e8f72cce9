//! Registry tests: registrations, failover, expiry and connection loss, driven with an injected
//! clock (`Instant`s built by the test), no sockets.

use super::*;

const CLUSTER: &str = "DefaultCluster";

fn topics(names: &[(&str, u32)]) -> Option<TopicConfigSerializeWrapper> {
    Some(TopicConfigSerializeWrapper {
        topic_config_table: names
            .iter()
            .map(|(name, queues)| (name.to_string(), TopicConfig::read_write(name, *queues)))
            .collect(),
        data_version: DataVersion::default(),
    })
}

fn registration(group: &str, addr: &str, id: u64, connection: u64) -> Registration {
    Registration {
        cluster: CLUSTER.to_string(),
        broker_name: group.to_string(),
        broker_addr: addr.to_string(),
        broker_id: id,
        ha_server_addr: format!("{addr}-ha"),
        heartbeat_timeout: HEARTBEAT_TIMEOUT_DEFAULT,
        topics: topics(&[("TopicTest", 4)]),
        connection: ConnectionId(connection),
        term: None,
    }
}

fn addrs(route: &TopicRouteData, group: &str) -> Vec<(u64, String)> {
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == group)
        .map(|b| b.broker_addrs.clone().into_iter().collect())
        .unwrap_or_default()
}

fn pairs(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|(id, a)| (*id, a.to_string())).collect()
}

/// Registers groups a and b with three nodes each (ids 0, 1, 2), each node over its own
/// connection numbered like its address.
fn two_groups(now: Instant) -> Registry {
    let mut registry = Registry::new();
    for (group, base) in [("broker-a", 10), ("broker-b", 20)] {
        for id in 0..3u64 {
            let addr = format!("10.0.0.{}:10911", base + id);
            let mut r = registration(group, &addr, id, base + id);
            if group == "broker-a" {
                r.topics = topics(&[("TopicTest", 4), ("OnlyA", 2)]);
            }
            registry.register(r, now).expect("registers");
        }
    }
    registry
}

#[test]
fn two_groups_of_three_nodes_merge_into_one_route() {
    let now = Instant::now();
    let registry = two_groups(now);
    assert_eq!(registry.len(), 6);

    let route = registry.route("TopicTest").expect("routed");
    let groups: Vec<&str> = route
        .queue_datas
        .iter()
        .map(|q| q.broker_name.as_str())
        .collect();
    assert_eq!(groups, ["broker-a", "broker-b"]);
    assert!(
        route
            .queue_datas
            .iter()
            .all(|q| q.read_queue_nums == 4 && q.write_queue_nums == 4)
    );
    assert_eq!(
        addrs(&route, "broker-a"),
        pairs(&[
            (0, "10.0.0.10:10911"),
            (1, "10.0.0.11:10911"),
            (2, "10.0.0.12:10911")
        ])
    );
    assert_eq!(addrs(&route, "broker-b").len(), 3);

    let only_a = registry.route("OnlyA").expect("routed");
    assert_eq!(only_a.queue_datas.len(), 1);
    assert_eq!(only_a.queue_datas[0].broker_name, "broker-a");
    assert_eq!(only_a.queue_datas[0].write_queue_nums, 2);
    assert_eq!(
        only_a.broker_datas.len(),
        1,
        "only the groups serving the topic"
    );
}

#[test]
fn an_unknown_topic_has_no_route() {
    let registry = two_groups(Instant::now());
    assert_eq!(registry.route("NoSuchTopic"), None);
    assert_eq!(Registry::new().route("TopicTest"), None);
}

#[test]
fn a_new_leader_at_id_zero_replaces_the_old_master() {
    let now = Instant::now();
    let mut registry = two_groups(now);

    // n1 wins the election and registers as master; the old master's entry must go at once,
    // and n1's old slave entry with it (one address, one id).
    let answer = registry
        .register(registration("broker-a", "10.0.0.11:10911", 0, 11), now)
        .expect("registers");
    assert_eq!(answer.master_addr, "10.0.0.11:10911");
    assert_eq!(answer.ha_server_addr, "10.0.0.11:10911-ha");
    let route = registry.route("TopicTest").expect("routed");
    assert_eq!(
        addrs(&route, "broker-a"),
        pairs(&[(0, "10.0.0.11:10911"), (2, "10.0.0.12:10911")])
    );

    // The old master comes back as a follower under id 1.
    let answer = registry
        .register(registration("broker-a", "10.0.0.10:10911", 1, 10), now)
        .expect("registers");
    assert_eq!(
        answer.master_addr, "10.0.0.11:10911",
        "a slave learns the master"
    );
    let route = registry.route("TopicTest").expect("routed");
    assert_eq!(
        addrs(&route, "broker-a"),
        pairs(&[
            (0, "10.0.0.11:10911"),
            (1, "10.0.0.10:10911"),
            (2, "10.0.0.12:10911")
        ])
    );
    assert_eq!(
        addrs(&route, "broker-b").len(),
        3,
        "the other group is untouched"
    );
}

#[test]
fn a_group_without_a_master_answers_empty_master_fields() {
    let now = Instant::now();
    let mut registry = Registry::new();
    let answer = registry
        .register(registration("broker-a", "10.0.0.11:10911", 1, 1), now)
        .expect("registers");
    assert_eq!(answer, Registered::default());
}

#[test]
fn brokers_expire_after_their_heartbeat_timeout() {
    let t0 = Instant::now();
    let mut registry = Registry::new();
    let mut short = registration("broker-a", "10.0.0.10:10911", 0, 1);
    short.heartbeat_timeout = Duration::from_secs(10);
    registry.register(short.clone(), t0).expect("registers");
    registry
        .register(registration("broker-a", "10.0.0.11:10911", 1, 2), t0)
        .expect("registers");

    assert!(registry.expire(t0 + Duration::from_secs(9)).is_empty());
    // A heartbeat at 9 s moves the deadline to 19 s.
    registry
        .register(short, t0 + Duration::from_secs(9))
        .expect("heartbeat");
    assert!(registry.expire(t0 + Duration::from_secs(15)).is_empty());
    assert_eq!(
        registry.expire(t0 + Duration::from_secs(20)),
        ["10.0.0.10:10911"]
    );

    let route = registry.route("TopicTest").expect("the slave still serves");
    assert_eq!(addrs(&route, "broker-a"), pairs(&[(1, "10.0.0.11:10911")]));

    // The default timeout is RocketMQ's two minutes.
    assert!(registry.expire(t0 + Duration::from_secs(120)).is_empty());
    assert_eq!(
        registry.expire(t0 + Duration::from_secs(121)),
        ["10.0.0.11:10911"]
    );
    assert!(registry.is_empty());
    assert_eq!(registry.route("TopicTest"), None);
}

#[test]
fn a_closed_connection_removes_only_the_brokers_it_carried() {
    let now = Instant::now();
    let mut registry = two_groups(now);
    // 10.0.0.12 re-registers over connection 99; closing its first connection leaves it be.
    registry
        .register(registration("broker-a", "10.0.0.12:10911", 2, 99), now)
        .expect("registers");
    assert!(registry.connection_closed(ConnectionId(12)).is_empty());

    assert_eq!(
        registry.connection_closed(ConnectionId(10)),
        ["10.0.0.10:10911"]
    );
    let route = registry.route("TopicTest").expect("routed");
    assert_eq!(
        addrs(&route, "broker-a"),
        pairs(&[(1, "10.0.0.11:10911"), (2, "10.0.0.12:10911")])
    );
    assert_eq!(registry.len(), 5);
}

#[test]
fn an_empty_body_keeps_the_previous_topic_table() {
    let now = Instant::now();
    let mut registry = Registry::new();
    registry
        .register(registration("broker-a", "10.0.0.10:10911", 0, 1), now)
        .expect("registers");
    let mut heartbeat = registration("broker-a", "10.0.0.10:10911", 0, 1);
    heartbeat.topics = None;
    registry.register(heartbeat, now).expect("heartbeat");
    assert!(registry.route("TopicTest").is_some());

    // A body with an empty table does replace it.
    let mut emptied = registration("broker-a", "10.0.0.10:10911", 0, 1);
    emptied.topics = topics(&[]);
    registry.register(emptied, now).expect("registers");
    assert_eq!(registry.route("TopicTest"), None);
}

#[test]
fn the_masters_topic_table_speaks_for_its_group_else_the_lowest_id() {
    let now = Instant::now();
    let mut registry = Registry::new();
    let mut master = registration("broker-a", "10.0.0.10:10911", 0, 1);
    master.topics = topics(&[("TopicTest", 8)]);
    registry.register(master, now).expect("registers");
    let mut slave = registration("broker-a", "10.0.0.11:10911", 1, 2);
    slave.topics = topics(&[("TopicTest", 4), ("Stale", 1)]);
    registry.register(slave, now).expect("registers");

    let route = registry.route("TopicTest").expect("routed");
    assert_eq!(
        route.queue_datas[0].write_queue_nums, 8,
        "the master's table"
    );
    assert_eq!(
        registry.route("Stale"),
        None,
        "a slave's extra topic is not served"
    );

    registry.connection_closed(ConnectionId(1));
    let route = registry.route("TopicTest").expect("the slave's table now");
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert!(registry.route("Stale").is_some());
}

#[test]
fn cluster_info_and_topic_lists_cover_every_group() {
    let now = Instant::now();
    let mut registry = two_groups(now);
    let mut other = registration("broker-c", "10.0.0.30:10911", 0, 30);
    other.cluster = "OtherCluster".to_string();
    other.topics = topics(&[("OtherTopic", 1)]);
    registry.register(other, now).expect("registers");

    let info = registry.cluster_info();
    assert_eq!(
        info.cluster_addr_table
            .get(CLUSTER)
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["broker-a".to_string(), "broker-b".to_string()])
    );
    assert_eq!(info.broker_addr_table["broker-a"].broker_addrs.len(), 3);
    assert_eq!(info.broker_addr_table["broker-c"].cluster, "OtherCluster");

    let all: Vec<String> = registry.all_topics().topic_list.into_iter().collect();
    assert_eq!(all, ["OnlyA", "OtherTopic", "TopicTest"]);
    let other: Vec<String> = registry
        .topics_of_cluster("OtherCluster")
        .topic_list
        .into_iter()
        .collect();
    assert_eq!(other, ["OtherTopic"]);
    assert!(
        registry
            .topics_of_cluster("NoCluster")
            .topic_list
            .is_empty()
    );
}

#[test]
fn unregister_removes_only_a_matching_registration() {
    let now = Instant::now();
    let mut registry = two_groups(now);
    assert!(
        !registry.unregister("broker-a", "10.0.0.10:10911", 1),
        "wrong id"
    );
    assert!(
        !registry.unregister("broker-b", "10.0.0.10:10911", 0),
        "wrong group"
    );
    assert!(registry.unregister("broker-a", "10.0.0.10:10911", 0));
    assert_eq!(registry.len(), 5);
    assert!(
        !registry.unregister("broker-a", "10.0.0.10:10911", 0),
        "already gone"
    );
}

#[test]
fn registrations_beyond_the_limit_are_refused_but_heartbeats_are_not() {
    let now = Instant::now();
    let mut registry = Registry::new();
    for i in 0..BROKERS_MAX {
        let r = registration(
            &format!("g{i}"),
            &format!("10.1.{}.{}:1", i / 256, i % 256),
            0,
            1,
        );
        registry.register(r, now).expect("registers");
    }
    let err = registry
        .register(registration("late", "10.2.0.0:1", 0, 1), now)
        .expect_err("full");
    assert!(
        matches!(
            err,
            RegisterError::Full {
                count: BROKERS_MAX,
                ..
            }
        ),
        "{err}"
    );
    registry
        .register(registration("g0", "10.1.0.0:1", 0, 1), now)
        .expect("a registered address may still heartbeat");
}

#[test]
fn a_stale_leader_of_an_older_term_cannot_take_back_the_master_slot() {
    let now = Instant::now();
    let mut registry = Registry::default();
    let at = |addr: &str, id: u64, conn: u64, term: u64| Registration {
        term: Some(term),
        ..registration("broker-a", addr, id, conn)
    };
    registry
        .register(at("10.0.0.10:10911", 0, 10, 3), now)
        .expect("the first leader");
    // A new leader of term 5 takes the slot; the old one (still believing it leads, term 3)
    // re-registers as master after the partition heals and is refused.
    registry
        .register(at("10.0.0.11:10911", 0, 11, 5), now)
        .expect("the new leader");
    let err = registry
        .register(at("10.0.0.10:10911", 0, 10, 3), now)
        .expect_err("stale");
    assert!(
        matches!(
            err,
            RegisterError::StaleMaster {
                term: 3,
                master_term: 5,
                ..
            }
        ),
        "{err}"
    );
    let route = registry.route("TopicTest").expect("routed");
    assert_eq!(addrs(&route, "broker-a"), pairs(&[(0, "10.0.0.11:10911")]));
    // Once it learns of the new term it registers as a slave, and a later term may lead.
    registry
        .register(at("10.0.0.10:10911", 1, 10, 5), now)
        .expect("as slave");
    registry
        .register(at("10.0.0.10:10911", 0, 10, 6), now)
        .expect("a newer term leads");
    let route = registry.route("TopicTest").expect("routed");
    assert_eq!(addrs(&route, "broker-a"), pairs(&[(0, "10.0.0.10:10911")]));
}
