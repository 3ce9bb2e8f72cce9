//! `mqadmin updateSubGroup`, `deleteSubGroup` and `getConsumerConfig`, as RocketMQ's mqadmin
//! is used.
//!
//! Goal: the verbs take RocketMQ's flags, reach the broker through a NameServer (`-c`) or
//! directly (`-b`, `-n` broker), print RocketMQ's output shapes, and the config takes effect
//! (a group with `consumeEnable=false` cannot consume); bad input is refused naming the flag or
//! field. Method: an in-process `mqnamesrv` and a single-node broker, the built `mqadmin`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{BROKER_NAME, CLUSTER, Setup, assert_success, stderr, stdout};

const MQADMIN: &str = env!("CARGO_BIN_EXE_mqadmin");

async fn mqadmin(args: &[&str]) -> std::process::Output {
    support::run(MQADMIN, args).await
}

/// The `name = value` lines of getConsumerConfig, by name.
fn config_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter(|l| !l.starts_with('='))
        .filter_map(|l| l.split_once("=  "))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_creates_shows_and_deletes_subscription_groups() {
    let mut setup = Setup::start().await;
    let ns = setup.namesrv_addr.clone();
    let broker = setup.broker_addr.clone();

    // updateSubGroup -c through the NameServer: RocketMQ's two output lines.
    let created = mqadmin(&[
        "updateSubGroup",
        "-n",
        &ns,
        "-c",
        CLUSTER,
        "-g",
        "SubG",
        "-r",
        "1",
        "-s",
        "false",
    ])
    .await;
    assert_success(&created);
    let out = stdout(&created);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("create subscription group to {broker} success."),
        "{out}"
    );
    assert!(
        lines[1].starts_with(
            "SubscriptionGroupConfig{groupName=SubG, consumeEnable=false, \
             consumeFromMinEnable=false, consumeBroadcastEnable=false, \
             consumeMessageOrderly=false, retryQueueNums=1, retryMaxTimes=1, \
             groupRetryPolicy=GroupRetryPolicy{type=CUSTOMIZED"
        ),
        "{out}"
    );

    // getConsumerConfig -g: RocketMQ's block for the broker that has it.
    let shown = mqadmin(&["getConsumerConfig", "-n", &ns, "-g", "SubG"]).await;
    assert_success(&shown);
    let out = stdout(&shown);
    assert_eq!(
        out.lines().next().unwrap(),
        format!(
            "============================={CLUSTER}:{BROKER_NAME}============================="
        ),
        "{out}"
    );
    let fields = config_lines(&out);
    let get = |k: &str| {
        fields
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("groupName"), Some("SubG"), "{out}");
    assert_eq!(get("consumeEnable"), Some("false"), "{out}");
    assert_eq!(get("retryMaxTimes"), Some("1"), "{out}");
    assert!(
        out.contains(&format!("{:<40}=  1\n", "retryMaxTimes")),
        "RocketMQ's %-40s layout: {out}"
    );

    // The config takes effect: a consumer of the disabled group is refused.
    assert_success(&mqadmin(&["updateTopic", "-b", &broker, "-t", "SubTopic", "-w", "1"]).await);
    let consumed = mqadmin(&[
        "consumeMessage",
        "-n",
        &broker,
        "-t",
        "SubTopic",
        "-g",
        "SubG",
        "--wait",
        "1",
    ])
    .await;
    assert_eq!(consumed.status.code(), Some(1), "{}", stdout(&consumed));
    assert!(
        stderr(&consumed).contains("FORBIDDEN"),
        "{}",
        stderr(&consumed)
    );

    // -b names the broker itself (no -n); -o and -p as RocketMQ's tool takes them.
    let direct = mqadmin(&[
        "updateSubGroup",
        "-b",
        &broker,
        "-g",
        "OrderlyG",
        "-o",
        "true",
        "-d",
        "true",
        "-p",
        r#"{"type":"EXPONENTIAL","exponentialRetryPolicy":{"initial":1000,"max":60000,"multiplier":3}}"#,
    ])
    .await;
    assert_success(&direct);
    assert!(
        stdout(&direct).contains(
            "consumeBroadcastEnable=true, consumeMessageOrderly=true, retryQueueNums=1, \
             retryMaxTimes=16, groupRetryPolicy=GroupRetryPolicy{type=EXPONENTIAL, \
             exponentialRetryPolicy=ExponentialRetryPolicy{initial=1000, max=60000, \
             multiplier=3}, customizedRetryPolicy=null}"
        ),
        "{}",
        stdout(&direct)
    );

    // Without -g, every group (RaftMQ's extension: RocketMQ lists them only through 201).
    let all = mqadmin(&["getConsumerConfig", "-n", &broker]).await;
    assert_success(&all);
    let names: Vec<String> = config_lines(&stdout(&all))
        .into_iter()
        .filter(|(k, _)| k == "groupName")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(names, ["OrderlyG", "SubG"], "{}", stdout(&all));

    // Bad input: the broker names the field, clap the flag.
    let negative = mqadmin(&["updateSubGroup", "-b", &broker, "-g", "SubG", "-r", "-1"]).await;
    assert_eq!(negative.status.code(), Some(1), "{}", stdout(&negative));
    assert!(
        stderr(&negative).contains("retryMaxTimes: must be 0..=2147483646, not -1"),
        "{}",
        stderr(&negative)
    );
    let bad_name = mqadmin(&["updateSubGroup", "-b", &broker, "-g", "a b"]).await;
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        stderr(&bad_name).contains("groupName"),
        "{}",
        stderr(&bad_name)
    );
    let bad_bool = mqadmin(&["updateSubGroup", "-b", &broker, "-g", "SubG", "-s", "maybe"]).await;
    assert_eq!(bad_bool.status.code(), Some(2));
    assert!(
        stderr(&bad_bool).contains("--consumeEnable"),
        "{}",
        stderr(&bad_bool)
    );
    let bad_policy = mqadmin(&[
        "updateSubGroup",
        "-b",
        &broker,
        "-g",
        "SubG",
        "-p",
        r#"{"type":"LINEAR"}"#,
    ])
    .await;
    assert_eq!(bad_policy.status.code(), Some(1));
    assert!(
        stderr(&bad_policy).contains("groupRetryPolicy") && stderr(&bad_policy).contains("LINEAR"),
        "{}",
        stderr(&bad_policy)
    );

    // deleteSubGroup -c: RocketMQ's line; the group is gone, a second delete names it.
    let deleted = mqadmin(&["deleteSubGroup", "-n", &ns, "-c", CLUSTER, "-g", "SubG"]).await;
    assert_success(&deleted);
    assert_eq!(
        stdout(&deleted).trim(),
        format!(
            "delete subscription group [SubG] from broker [{broker}] in cluster [{CLUSTER}] success."
        ),
    );
    let missing = mqadmin(&["getConsumerConfig", "-n", &ns, "-g", "SubG"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("SubG"), "{}", stderr(&missing));
    let again = mqadmin(&["deleteSubGroup", "-b", &broker, "-g", "SubG"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("CODE_NOT_FOUND") && stderr(&again).contains("SubG"),
        "{}",
        stderr(&again)
    );
    let direct_delete = mqadmin(&[
        "deleteSubGroup",
        "-b",
        &broker,
        "-g",
        "OrderlyG",
        "-r",
        "true",
    ])
    .await;
    assert_success(&direct_delete);
    assert_eq!(
        stdout(&direct_delete).trim(),
        format!("delete subscription group [OrderlyG] from broker [{broker}] success."),
    );

    setup.stop().await;
}
