//! [`NamesrvConfig`]: what `mqnamesrv -c namesrv.conf` reads, in RocketMQ's keys.
//!
//! One table, [`KEY_TABLE`], lists every key the file may hold. A row either applies its value
//! (`listenPort`, `bindAddress`, `scanNotActiveBrokerInterval`) or accepts a RocketMQ key that has
//! no meaning here (thread pools, buffer sizes, the KV file path: this NameServer keeps its KV
//! config in memory) after checking that the value is of the key's kind, so a typo in a value is
//! caught even where the key is inert. A key in no row is an error naming the key and its line.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use raft_log::config::{Property, parse_bool, parse_properties};

use crate::error::ConfigError;

/// RocketMQ's NameServer port.
pub const LISTEN_PORT_DEFAULT: u16 = 9876;
/// How often expired brokers are looked for (RocketMQ's `scanNotActiveBrokerInterval`).
pub const SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// The shortest scan interval accepted: a tighter loop only burns CPU.
pub const SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_MIN: u64 = 10;
/// The longest scan interval accepted (one hour): beyond it expiry would be meaningless.
pub const SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_MAX: u64 = 3_600_000;

const _: () =
    assert!(SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_MIN <= SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_DEFAULT);
const _: () =
    assert!(SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_DEFAULT <= SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_MAX);

/// The NameServer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamesrvConfig {
    /// `listenPort`: the TCP port (0 picks a free one, for tests).
    pub listen_port: u16,
    /// `bindAddress`: the local address to listen on, `0.0.0.0` (every interface) by default.
    pub bind_address: IpAddr,
    /// `scanNotActiveBrokerInterval`, in ms: how often brokers past their heartbeat timeout are
    /// removed.
    pub scan_not_active_broker_interval_ms: u64,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_port: LISTEN_PORT_DEFAULT,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            scan_not_active_broker_interval_ms: SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_DEFAULT,
        }
    }
}

/// What a row of [`KEY_TABLE`] does with its value.
#[derive(Clone, Copy, Debug)]
pub enum KeyRule {
    /// Sets a field of [`NamesrvConfig`]; an error says what the value should be.
    Apply(fn(&mut NamesrvConfig, &str) -> Result<(), &'static str>),
    /// A RocketMQ key without effect here; its value must still be of this kind.
    Ignore(ValueKind),
}

/// The kind of an ignored key's value, as RocketMQ's field type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `true` or `false` ([`parse_bool`]).
    Bool,
    /// A decimal integer (Java `int`/`long`).
    Integer,
    /// Any text.
    Text,
}

/// Every key of namesrv.conf: RocketMQ's `NamesrvConfig` and `NettyServerConfig` fields.
pub const KEY_TABLE: &[(&str, KeyRule)] = &[
    ("listenPort", KeyRule::Apply(apply_listen_port)),
    ("bindAddress", KeyRule::Apply(apply_bind_address)),
    (
        "scanNotActiveBrokerInterval",
        KeyRule::Apply(apply_scan_interval),
    ),
    // NamesrvConfig: the KV config lives in memory, there is no home, product or test mode.
    ("rocketmqHome", KeyRule::Ignore(ValueKind::Text)),
    ("kvConfigPath", KeyRule::Ignore(ValueKind::Text)),
    ("configStorePath", KeyRule::Ignore(ValueKind::Text)),
    ("productEnvName", KeyRule::Ignore(ValueKind::Text)),
    ("clusterTest", KeyRule::Ignore(ValueKind::Bool)),
    ("orderMessageEnable", KeyRule::Ignore(ValueKind::Bool)),
    (
        "returnOrderTopicConfigToBroker",
        KeyRule::Ignore(ValueKind::Bool),
    ),
    (
        "clientRequestThreadPoolNums",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    ("defaultThreadPoolNums", KeyRule::Ignore(ValueKind::Integer)),
    (
        "clientRequestThreadPoolQueueCapacity",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "defaultThreadPoolQueueCapacity",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "unRegisterBrokerQueueCapacity",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    ("supportActingMaster", KeyRule::Ignore(ValueKind::Bool)),
    ("enableAllTopicList", KeyRule::Ignore(ValueKind::Bool)),
    ("enableTopicList", KeyRule::Ignore(ValueKind::Bool)),
    ("notifyMinBrokerIdChanged", KeyRule::Ignore(ValueKind::Bool)),
    (
        "notifyMinBrokerIdChangeTimeoutMillis",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "enableControllerInNamesrv",
        KeyRule::Ignore(ValueKind::Bool),
    ),
    ("needWaitForService", KeyRule::Ignore(ValueKind::Bool)),
    ("waitSecondsForService", KeyRule::Ignore(ValueKind::Integer)),
    (
        "deleteTopicWithBrokerRegistration",
        KeyRule::Ignore(ValueKind::Bool),
    ),
    ("configBlackList", KeyRule::Ignore(ValueKind::Text)),
    // NettyServerConfig: tokio owns threads and buffers.
    ("serverWorkerThreads", KeyRule::Ignore(ValueKind::Integer)),
    (
        "serverCallbackExecutorThreads",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    ("serverSelectorThreads", KeyRule::Ignore(ValueKind::Integer)),
    (
        "serverOnewaySemaphoreValue",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "serverAsyncSemaphoreValue",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "serverChannelMaxIdleTimeSeconds",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "serverSocketSndBufSize",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "serverSocketRcvBufSize",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    ("serverSocketBacklog", KeyRule::Ignore(ValueKind::Integer)),
    (
        "writeBufferHighWaterMark",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "writeBufferLowWaterMark",
        KeyRule::Ignore(ValueKind::Integer),
    ),
    (
        "serverPooledByteBufAllocatorEnable",
        KeyRule::Ignore(ValueKind::Bool),
    ),
    ("useEpollNativeSelector", KeyRule::Ignore(ValueKind::Bool)),
];

fn apply_listen_port(config: &mut NamesrvConfig, value: &str) -> Result<(), &'static str> {
    config.listen_port = value
        .parse()
        .map_err(|_| "expected a port number 0..=65535")?;
    Ok(())
}

fn apply_bind_address(config: &mut NamesrvConfig, value: &str) -> Result<(), &'static str> {
    config.bind_address = value
        .parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1")?;
    Ok(())
}

fn apply_scan_interval(config: &mut NamesrvConfig, value: &str) -> Result<(), &'static str> {
    let ms: u64 = value
        .parse()
        .map_err(|_| "expected milliseconds 10..=3600000")?;
    if !(SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_MIN..=SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS_MAX)
        .contains(&ms)
    {
        return Err("expected milliseconds 10..=3600000");
    }
    config.scan_not_active_broker_interval_ms = ms;
    Ok(())
}

fn check_kind(kind: ValueKind, value: &str) -> Result<(), &'static str> {
    match kind {
        ValueKind::Bool => parse_bool(value)
            .map(|_| ())
            .map_err(|_| "expected true or false"),
        ValueKind::Integer => value
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "expected an integer"),
        ValueKind::Text => Ok(()),
    }
}

impl NamesrvConfig {
    /// Reads and applies `path`.
    ///
    /// # Errors
    /// The file cannot be read, or as [`NamesrvConfig::from_properties`].
    pub fn from_file(path: &Path) -> Result<NamesrvConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        NamesrvConfig::from_properties(&text)
    }

    /// Applies a properties text over the defaults; a key given twice keeps its last value, as
    /// Java's `Properties` does.
    ///
    /// # Errors
    /// A line that is not `key=value`, a key not in [`KEY_TABLE`], or a value not of its key's
    /// kind; each names the key and line.
    pub fn from_properties(text: &str) -> Result<NamesrvConfig, ConfigError> {
        let properties = parse_properties(text).map_err(|source| ConfigError::Syntax { source })?;
        let mut config = NamesrvConfig::default();
        for property in &properties {
            config.apply(property)?;
        }
        Ok(config)
    }

    /// Applies one key.
    ///
    /// # Errors
    /// As [`NamesrvConfig::from_properties`].
    pub fn apply(&mut self, property: &Property) -> Result<(), ConfigError> {
        let Some((_, rule)) = KEY_TABLE.iter().find(|(key, _)| *key == property.key) else {
            return Err(ConfigError::UnknownKey {
                key: property.key.clone(),
                line: property.line,
            });
        };
        let outcome = match rule {
            KeyRule::Apply(apply) => apply(self, &property.value),
            KeyRule::Ignore(kind) => check_kind(*kind, &property.value),
        };
        outcome.map_err(|reason| ConfigError::Invalid {
            key: property.key.clone(),
            value: property.value.clone(),
            line: property.line,
            reason,
        })
    }

    /// The scan interval as a duration.
    pub fn scan_not_active_broker_interval(&self) -> Duration {
        Duration::from_millis(self.scan_not_active_broker_interval_ms)
    }

    /// The effective config as sorted `key=value` lines (what `mqnamesrv -p` prints); feeding
    /// it back to [`NamesrvConfig::from_properties`] gives the same config.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "bindAddress={}", self.bind_address);
        let _ = writeln!(out, "listenPort={}", self.listen_port);
        let _ = writeln!(
            out,
            "scanNotActiveBrokerInterval={}",
            self.scan_not_active_broker_interval_ms
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_rocketmq_defaults() {
        let config = NamesrvConfig::from_properties("# nothing\n").expect("parses");
        assert_eq!(config, NamesrvConfig::default());
        assert_eq!(config.listen_port, 9876);
        assert_eq!(config.bind_address.to_string(), "0.0.0.0");
        assert_eq!(config.scan_not_active_broker_interval_ms, 5000);
    }

    #[test]
    fn applied_and_ignored_keys_are_read() {
        let text = "listenPort = 19876\nbindAddress=127.0.0.1\nscanNotActiveBrokerInterval: 250\n\
                    rocketmqHome=/opt/rocketmq\nkvConfigPath=/tmp/kv.json\norderMessageEnable=TRUE\n\
                    clusterTest=false\nserverWorkerThreads=8\n";
        let config = NamesrvConfig::from_properties(text).expect("parses");
        assert_eq!(config.listen_port, 19876);
        assert_eq!(config.bind_address.to_string(), "127.0.0.1");
        assert_eq!(
            config.scan_not_active_broker_interval(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = NamesrvConfig::from_properties("listenPort=9876\n\nlistenPrt=1\n")
            .expect_err("unknown");
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, line: Some(3) } if key == "listenPrt"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "unknown key listenPrt (line 3)");
    }

    #[test]
    fn a_bad_value_names_key_value_and_line() {
        for (text, key, value) in [
            ("listenPort=98765\n", "listenPort", "98765"),
            ("bindAddress=localhost\n", "bindAddress", "localhost"),
            (
                "scanNotActiveBrokerInterval=0\n",
                "scanNotActiveBrokerInterval",
                "0",
            ),
            ("clusterTest=yes\n", "clusterTest", "yes"),
            (
                "serverWorkerThreads=eight\n",
                "serverWorkerThreads",
                "eight",
            ),
        ] {
            let err = NamesrvConfig::from_properties(text).expect_err(text);
            let message = err.to_string();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, value: v, line: Some(1), .. }
                    if k == key && v == value),
                "{message}"
            );
            assert!(
                message.contains(key) && message.contains(value),
                "{message}"
            );
            assert!(message.contains("line 1"), "{message}");
        }
    }

    #[test]
    fn a_line_without_a_separator_is_refused() {
        let err = NamesrvConfig::from_properties("listenPort=1\njunk\n").expect_err("syntax");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn render_round_trips() {
        let config = NamesrvConfig {
            listen_port: 1234,
            bind_address: IpAddr::from([127, 0, 0, 1]),
            scan_not_active_broker_interval_ms: 100,
        };
        let text = config.render();
        assert_eq!(
            text,
            "bindAddress=127.0.0.1\nlistenPort=1234\nscanNotActiveBrokerInterval=100\n"
        );
        assert_eq!(
            NamesrvConfig::from_properties(&text).expect("parses"),
            config
        );
    }
}
