//! `mqbench --protocol remoting` against a NameServer and a broker.
//!
//! Goal: the remoting load works end to end — the producer creates its topic through the
//! NameServer's cluster info, sends SEND_MESSAGE_V2 to the routed master, the consumer pulls
//! what was sent and commits its offsets — and reports successes without errors, in the same
//! JSON report as gRPC mode. Method: an in-process `mqnamesrv` and single-node broker, then the
//! built `mqbench` binary for about 2 s per mode with `--json`; also once with the broker's
//! address instead of the NameServer's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Setup, assert_success, stdout};

const MQBENCH: &str = env!("CARGO_BIN_EXE_mqbench");

/// Runs mqbench with `args` and returns its JSON report, after checking it succeeded.
async fn mqbench(args: &[&str]) -> serde_json::Value {
    let out = support::run(MQBENCH, args).await;
    assert_success(&out);
    serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

fn assert_clean(report: &serde_json::Value, mode: &str) {
    assert_eq!(report["mode"], mode, "{report}");
    assert_eq!(report["protocol"], "remoting", "{report}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["latency"]["count"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["client_cpu_us_per_msg"].as_f64().is_some(),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remoting_load_sends_and_receives_without_errors() {
    let mut setup = Setup::start().await;
    let ns = setup.namesrv_addr.clone();
    let common = [
        "--protocol",
        "remoting",
        "-n",
        &ns,
        "-t",
        "BenchRemoting",
        "--connections",
        "1",
        "--duration",
        "2",
        "--json",
    ];

    let mut producer: Vec<&str> = vec!["producer", "-q", "4", "--inflight", "4", "-s", "128"];
    producer.extend(common);
    let sent = mqbench(&producer).await;
    assert_clean(&sent, "producer");

    let mut consumer: Vec<&str> = vec!["consumer", "-g", "BenchGroup", "--inflight", "2"];
    consumer.extend(common);
    consumer.extend(["--long-poll", "1"]);
    let received = mqbench(&consumer).await;
    assert_clean(&received, "consumer");
    eprintln!("producer: {sent}\nconsumer: {received}");
    assert!(
        received["ack_latency"]["count"].as_u64().unwrap() > 0,
        "{received}"
    );
    assert!(
        received["ok"].as_u64().unwrap() <= sent["ok"].as_u64().unwrap(),
        "received {received} sent {sent}"
    );

    // Broker addresses work too: one group, its leader.
    let broker = setup.broker_addr.clone();
    let direct = mqbench(&[
        "producer",
        "--protocol",
        "remoting",
        "-n",
        &broker,
        "-t",
        "BenchDirect",
        "-q",
        "2",
        "--connections",
        "1",
        "--inflight",
        "2",
        "--count",
        "50",
        "--json",
    ])
    .await;
    assert_clean(&direct, "producer");
    assert_eq!(direct["ok"], 50, "{direct}");

    setup.stop().await;
}
