//! Unit tests of the broker.conf reader: defaults, errors, warnings, rendering.

use super::*;

fn load(text: &str) -> (BrokerConfig, Vec<Warning>) {
    BrokerConfig::from_str(text, "test.conf").unwrap()
}

fn load_err(text: &str) -> String {
    BrokerConfig::from_str(text, "test.conf")
        .unwrap_err()
        .to_string()
}

const GROUP: &str = "enableDLegerCommitLog=true\n\
                     dLegerGroup=g\n\
                     dLegerPeers=n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913\n\
                     dLegerSelfId=n1\n";

#[test]
fn an_empty_file_gives_rocketmq_defaults_on_a_single_node_group() {
    let (c, warnings) = load("");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.broker_cluster_name, "DefaultCluster");
    assert_eq!(c.broker_name, default_broker_name());
    assert_eq!(c.broker_id, 0);
    assert_eq!(c.listen_port, 10911);
    assert_eq!(c.bind_addr().to_string(), "0.0.0.0:10911");
    assert_eq!(
        (c.namesrv_addr.as_deref(), c.broker_ip1.as_deref()),
        (None, None)
    );
    assert_eq!(c.store_path_root_dir, default_store_root());
    assert!(c.store_path_root_dir.ends_with("store"));
    assert_eq!(
        c.store_path_commit_log,
        default_store_root().join("commitlog")
    );
    assert!(!c.enable_dleger_commit_log);
    assert!((1..=4).contains(&c.send_message_thread_pool_nums));
    assert!(c.auto_create_topic_enable && c.auto_create_subscription_group);
    assert_eq!(c.default_topic_queue_nums, 8);
    assert_eq!(c.max_message_size, 4_194_304);
    assert_eq!(c.default_retry_max_times, 16);
    // raft-log's retention and durability keys carry RocketMQ's defaults too.
    let r = &c.raft_log;
    assert_eq!(r.store.flush_disk_type, raft_log::FlushDiskType::AsyncFlush);
    assert_eq!(r.file_reserved_time_hours, 72);
    assert_eq!(r.delete_when_hours.iter().copied().collect::<Vec<_>>(), [4]);
    assert_eq!(r.disk_max_used_space_ratio, 75);
    // The single-node group.
    assert_eq!((r.self_id.as_str(), r.peers.len()), ("n0", 1));
    assert_eq!(r.group, c.broker_name);
    assert_eq!(r.store.dir, default_store_root().join("dledger-n0"));
}

#[test]
fn broker_and_raft_log_keys_land_in_their_fields() {
    let (c, warnings) = load(&format!(
        "{GROUP}listenPort=30921\nstorePathRootDir=/data/x\nflushDiskType=SYNC_FLUSH\n\
         maxMessageSize=1024\nbrokerIP1=10.0.0.7\nnamesrvAddr=a:9876;b:9876\n"
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.listen_port, 30921);
    assert_eq!(c.store_path_commit_log, PathBuf::from("/data/x/commitlog"));
    assert_eq!(c.raft_log.store.dir, PathBuf::from("/data/x/dledger-n1"));
    assert_eq!(
        c.raft_log.store.flush_disk_type,
        raft_log::FlushDiskType::SyncFlush
    );
    assert_eq!(c.raft_log.node_id(), 1);
    assert_eq!(c.max_message_size, 1024);
    assert_eq!(c.broker_ip1.as_deref(), Some("10.0.0.7"));
    assert_eq!(c.namesrv_addr.as_deref(), Some("a:9876;b:9876"));
}

#[test]
fn bad_values_name_key_value_file_and_line() {
    for (text, key, line) in [
        ("brokerName=a\nlistenPort=0\n", "listenPort", 2),
        ("listenPort=65536\n", "listenPort", 1),
        (
            "\n\ndefaultTopicQueueNums=1025\n",
            "defaultTopicQueueNums",
            3,
        ),
        ("maxMessageSize=0\n", "maxMessageSize", 1),
        ("autoCreateTopicEnable=yes\n", "autoCreateTopicEnable", 1),
        ("namesrvAddr=127.0.0.1\n", "namesrvAddr", 1),
        ("enableDLegerCommitLog=1\n", "enableDLegerCommitLog", 1),
        ("a=b\nflushDiskType=SOMETIMES\n", "flushDiskType", 2),
        ("aclEnable=true\n", "aclEnable", 1),
    ] {
        let e = load_err(text);
        assert!(e.contains(key), "{text:?}: {e}");
        assert!(e.contains(&format!("(line {line})")), "{text:?}: {e}");
        assert!(e.contains("test.conf"), "{text:?}: {e}");
    }
}

#[test]
fn max_message_size_must_fit_a_raft_log_entry() {
    let e = load_err("\nmaxMessageSize=2000000000\n");
    assert!(
        e.contains("maxMessageSize") && e.contains("(line 2)"),
        "{e}"
    );
    assert!(e.contains("largest entry body"), "{e}");
}

#[test]
fn a_group_needs_peers_and_self_id() {
    let e = load_err("enableDLegerCommitLog=true\ndLegerSelfId=n0\n");
    assert!(e.contains("missing required key dLegerPeers"), "{e}");
    let e = load_err("enableDLegerCommitLog=true\ndLegerPeers=n0-127.0.0.1:1\n");
    assert!(e.contains("missing required key dLegerSelfId"), "{e}");
}

#[test]
fn group_keys_without_enable_dleger_are_ignored_with_a_warning() {
    let (c, warnings) = load("dLegerPeers=n0-127.0.0.1:1;n1-127.0.0.1:2\ndLegerSelfId=n1\n");
    assert_eq!(c.raft_log.peers.len(), 1);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.message.contains("single-node")));
}

#[test]
fn a_bad_broker_name_is_blamed_for_the_single_node_group_name() {
    let e = load_err("brokerName=a/b\n");
    assert!(e.contains("brokerName") && e.contains("(line 1)"), "{e}");
}

#[test]
fn unknown_and_ignored_keys_are_warnings_naming_the_key() {
    let (_, warnings) = load("fooBar=1\nbrokerRole=ASYNC_MASTER\ndlegerPeers=x\n");
    let got: Vec<_> = warnings
        .iter()
        .map(|w| (w.key.as_str(), w.line, w.message.as_str()))
        .collect();
    assert_eq!(got[0], ("fooBar", Some(1), "unknown key"));
    assert_eq!(got[1].0, "brokerRole");
    assert!(got[1].2.starts_with("ignored: "), "{got:?}");
    assert_eq!(
        got[2],
        (
            "dlegerPeers",
            Some(3),
            "unknown key (did you mean dLegerPeers?)"
        )
    );
}

#[test]
fn the_last_duplicate_wins_with_a_warning() {
    let (c, warnings) = load("listenPort=abc\nlistenPort=30911\n");
    assert_eq!(c.listen_port, 30911);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        (warnings[0].key.as_str(), warnings[0].line),
        ("listenPort", Some(1))
    );
    assert!(warnings[0].message.contains("line 2 wins"), "{warnings:?}");
}

#[test]
fn broker_id_other_than_zero_is_dropped_with_a_warning() {
    let (c, warnings) = load("brokerId=2\n");
    assert_eq!(c.broker_id, 0);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn the_rocketmq_segment_size_key_reaches_raft_log() {
    let (c, warnings) = load("mappedFileSizeCommitLog=16777216\n");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.raft_log.store.data_segment_bytes, 16 << 20);
    let e = load_err("mappedFileSizeCommitLog=1024\n");
    assert!(
        e.contains("mappedFileSizeCommitLog") && e.contains("(line 1)"),
        "{e}"
    );
    let (c, warnings) =
        load("mappedFileSizeCommitLog=16777216\nmappedFileSizeForEntryData=33554432\n");
    assert_eq!(c.raft_log.store.data_segment_bytes, 32 << 20);
    assert_eq!(warnings[0].key, "mappedFileSizeCommitLog");
}

#[test]
fn render_is_sorted_and_loads_back_to_the_same_config() {
    let group_with_preferred = format!("{GROUP}preferredLeaderIds=n0;n2\nbrokerIP1=h.example\n");
    for text in [
        "",
        GROUP,
        &group_with_preferred,
        "brokerName=b\nnamesrvAddr=h:1\ndeleteWhen=04;16\nmappedFileSizeCommitLog=16777216\n",
    ] {
        let (c, _) = load(text);
        let rendered = c.render();
        let keys: Vec<&str> = rendered
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|kv| kv.0)
            .collect();
        assert!(keys.is_sorted(), "{rendered}");
        // What was written is printed back, except the alias, printed under raft-log's name.
        for line in text
            .lines()
            .filter(|l| !l.starts_with("mappedFileSizeCommitLog"))
        {
            assert!(rendered.lines().any(|l| l == line), "{line}:\n{rendered}");
        }
        let (again, warnings) = BrokerConfig::from_str(&rendered, "rendered").unwrap();
        assert!(warnings.is_empty(), "{rendered}\n{warnings:?}");
        assert_eq!(again.render(), rendered);
    }
}

#[test]
fn raft_log_keys_have_no_broker_row_but_the_store_paths() {
    // raft-log parses and prints its own keys; a broker row for one would be a second reader.
    for key in raft_log::config::KEYS {
        let shared = matches!(*key, "storePathRootDir" | "storePathCommitLog");
        assert_eq!(spec(key).is_some(), shared, "{key}");
    }
}

#[test]
fn the_table_lists_each_key_once() {
    let mut keys: Vec<&str> = KEYS.iter().map(|s| s.key).collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len());
}

#[test]
fn broker_and_raft_log_booleans_accept_any_letter_case_and_refuse_yes() {
    // Regression: enablePreVote=TRUE was an error while autoCreateTopicEnable=TRUE worked;
    // both go through raft-log's one boolean parser now.
    for (value, expected) in [
        ("TRUE", true),
        ("True", true),
        ("true", true),
        ("FALSE", false),
    ] {
        let (c, _) = load(&format!(
            "{GROUP}enablePreVote={value}\nautoCreateTopicEnable={value}\n"
        ));
        assert_eq!(c.raft_log.enable_pre_vote, expected, "{value}");
        assert_eq!(c.auto_create_topic_enable, expected, "{value}");
    }
    for key in ["enablePreVote", "autoCreateTopicEnable"] {
        let e = load_err(&format!("{GROUP}{key}=yes\n"));
        assert!(e.contains(key), "{key}: {e}");
        assert!(e.contains("(line 5)"), "{key}: {e}");
    }
}

#[test]
fn trace_keys_have_rocketmqs_defaults_and_check_the_topic_name() {
    let (c, _) = load("");
    assert!(!c.trace_topic_enable && !c.broker_trace_enable);
    assert_eq!(c.msg_trace_topic_name, "RMQ_SYS_TRACE_TOPIC");
    let (c, warnings) =
        load("traceTopicEnable=true\nmsgTraceTopicName=MyTrace\nbrokerTraceEnable=TRUE\n");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(c.trace_topic_enable && c.broker_trace_enable);
    assert_eq!(c.msg_trace_topic_name, "MyTrace");
    assert!(c.render().contains("msgTraceTopicName=MyTrace\n"));
    let e = load_err("msgTraceTopicName=a b\n");
    assert!(
        e.contains("msgTraceTopicName") && e.contains("(line 1)"),
        "{e}"
    );
}

#[test]
fn metrics_keys_follow_rocketmq_and_refuse_exporters_raftmq_lacks() {
    let (c, _) = load("");
    assert_eq!(c.metrics_exporter_type, MetricsExporterType::Disable);
    assert_eq!(c.metrics_prom_exporter_port, 5557);
    assert_eq!(c.http_addr(), None, "no HTTP listener unless PROM");
    let (c, warnings) = load(
        "bindAddress=127.0.0.1\nmetricsExporterType=PROM\nmetricsPromExporterPort=5558\n\
         metricsPromExporterHost=\n",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.http_addr(), Some("127.0.0.1:5558".parse().expect("addr")));
    assert!(c.render().contains("metricsExporterType=PROM\n"));
    let (c, _) = load("metricsExporterType=2\nmetricsPromExporterHost=127.0.0.2\n");
    assert_eq!(c.http_addr(), Some("127.0.0.2:5557".parse().expect("addr")));
    let e = load_err("\nmetricsExporterType=OTLP_GRPC\n");
    assert!(
        e.contains("metricsExporterType") && e.contains("(line 2)") && e.contains("PROM"),
        "{e}"
    );
    let e = load_err("metricsPromExporterHost=localhost:1\n");
    assert!(e.contains("metricsPromExporterHost"), "{e}");
}
