//! raft-log's configuration, with DLedger's and RocketMQ's key names and RaftMQ's defaults.
//!
//! [`Config::from_properties`] reads `key=value` pairs (the broker hands over the lines of its
//! broker.conf); every invalid value is an error naming the key and, when known, the line.
//! Keys raft-log does not know are returned to the caller, which decides whether to warn.
//!
//! Every `_max` limit lives here, and `const` assertions pin the relations between them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// The size of an entry header on disk, in bytes.
pub const ENTRY_HEADER_BYTES: u64 = 48;
/// The size of an index record on disk, in bytes.
pub const INDEX_RECORD_BYTES: u64 = 32;
/// [`ENTRY_HEADER_BYTES`] as a length.
pub const ENTRY_HEADER_LEN: usize = 48;
/// [`INDEX_RECORD_BYTES`] as a length.
pub const INDEX_RECORD_LEN: usize = 32;
/// [`ENTRY_BODY_BYTES_MAX_DEFAULT`] as a length.
const ENTRY_BODY_LEN_MAX_DEFAULT: usize = 8 << 20;

const _: () = assert!(ENTRY_HEADER_LEN as u64 == ENTRY_HEADER_BYTES);
const _: () = assert!(INDEX_RECORD_LEN as u64 == INDEX_RECORD_BYTES);
const _: () = assert!(ENTRY_BODY_LEN_MAX_DEFAULT as u64 == ENTRY_BODY_BYTES_MAX_DEFAULT);
/// The largest entry body raft-log accepts by default (the broker groups messages up to this).
pub const ENTRY_BODY_BYTES_MAX_DEFAULT: u64 = 8 << 20;
/// The largest gRPC message between peers. tonic's default of 4 MiB is too small for batches.
pub const RPC_MESSAGE_BYTES_MAX: usize = 64 << 20;
/// Bytes of entries raft-log puts in one replication RPC before it starts a new one.
pub const RPC_PAYLOAD_BYTES_TARGET: usize = 16 << 20;
/// Size of one chunk of a snapshot on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

const _: () =
    assert!(ENTRY_BODY_BYTES_MAX_DEFAULT + ENTRY_HEADER_BYTES < RPC_MESSAGE_BYTES_MAX as u64);
const _: () =
    assert!(RPC_PAYLOAD_BYTES_TARGET + ENTRY_BODY_LEN_MAX_DEFAULT * 2 <= RPC_MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES < RPC_MESSAGE_BYTES_MAX);

/// When an entry counts as stored on a replica (RocketMQ's `flushDiskType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Counted once in the replica's page cache; a background flusher syncs every
    /// `flushIntervalCommitLog` ms. Power loss of a majority inside that window loses data.
    AsyncFlush,
    /// Counted only after fdatasync; one flusher syncs every queued write as a group.
    SyncFlush,
}

impl FlushDiskType {
    /// The RocketMQ spelling of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
        }
    }
}

/// One member of the group, from `dLegerPeers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The DLedger id as written (`n0`).
    pub id: String,
    /// The numeric node id raft-log uses (the digits at the end of `id`).
    pub node_id: u64,
    /// `host:port` of the peer's replication endpoint.
    pub addr: String,
}

/// The settings of the on-disk store; part of [`Config`], usable on its own in tests.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The directory holding `data/`, `index/`, `meta` and `snapshot/`.
    pub dir: PathBuf,
    /// Size of each preallocated data segment (`mappedFileSizeForEntryData`).
    pub data_segment_bytes: u64,
    /// Size of each preallocated index segment (`mappedFileSizeForEntryIndex`).
    pub index_segment_bytes: u64,
    /// The durability policy (`flushDiskType`).
    pub flush_disk_type: FlushDiskType,
    /// Period of the background flusher under ASYNC_FLUSH (`flushIntervalCommitLog`).
    pub flush_interval: Duration,
    /// Period of the durable checkpoint of the flushed position (`checkPointInterval`).
    pub checkpoint_interval: Duration,
    /// The largest entry body accepted.
    pub entry_body_bytes_max: u64,
    /// **Unsafe, for fault-injection tests only** (`unsafeSkipFsync`): the flusher reports
    /// data as durable without calling fdatasync and never advances the durable checkpoint.
    /// Acknowledged entries are then lost on power loss — the negative control that proves
    /// the chaos harness can see a missing fsync. Never set in production.
    pub unsafe_skip_fsync: bool,
}

impl StoreConfig {
    /// A store config with RaftMQ's defaults in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            data_segment_bytes: 1 << 30,
            index_segment_bytes: INDEX_RECORD_BYTES * 5 * 1024 * 1024,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval: Duration::from_millis(10),
            checkpoint_interval: Duration::from_millis(1000),
            entry_body_bytes_max: ENTRY_BODY_BYTES_MAX_DEFAULT,
            unsafe_skip_fsync: false,
        }
    }

    /// Checks the relations between the sizes.
    ///
    /// # Errors
    /// Names the key whose value does not fit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let entry_max = self.entry_body_bytes_max + ENTRY_HEADER_BYTES;
        if self.data_segment_bytes < 2 * entry_max.min(1 << 20)
            || self.data_segment_bytes < entry_max
        {
            return Err(invalid(
                "mappedFileSizeForEntryData",
                self.data_segment_bytes,
                format!("must hold the largest entry ({entry_max} bytes) and be at least 64 KiB"),
            ));
        }
        if self.data_segment_bytes < 64 << 10 {
            return Err(invalid(
                "mappedFileSizeForEntryData",
                self.data_segment_bytes,
                "must be at least 64 KiB",
            ));
        }
        if self.index_segment_bytes < 4096
            || !self.index_segment_bytes.is_multiple_of(INDEX_RECORD_BYTES)
        {
            return Err(invalid(
                "mappedFileSizeForEntryIndex",
                self.index_segment_bytes,
                format!("must be a multiple of {INDEX_RECORD_BYTES} and at least 4096"),
            ));
        }
        Ok(())
    }
}

/// The configuration of one raft-log node.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Raft group name (`dLegerGroup`).
    pub group: String,
    /// Every member of the group (`dLegerPeers`).
    pub peers: Vec<Peer>,
    /// This node's DLedger id (`dLegerSelfId`).
    pub self_id: String,
    /// The store settings. `dir` is `<storePathRootDir>/dledger-<selfId>`.
    pub store: StoreConfig,
    /// Leader heartbeat period (`heartBeatTimeIntervalMs`).
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout (`electionTimeoutMinMs`).
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout (`electionTimeoutMaxMs`).
    pub election_timeout_max_ms: u64,
    /// Whether a node asks before it campaigns (`enablePreVote`).
    pub enable_pre_vote: bool,
    /// Preferred leaders (`preferredLeaderIds`): the leader hands over to one that is caught up.
    pub preferred_leader_ids: Vec<String>,
    /// Appends that may wait for their quorum at once (`maxPendingRequestsNum`).
    pub max_pending_requests: usize,
    /// How long an append waits for its quorum before its outcome is reported unknown
    /// (`maxWaitAckTimeMs`).
    pub max_wait_ack_ms: u64,
    /// Entries per replication RPC (`maxBatchAppendEntries`).
    pub max_batch_entries: u64,
    /// Hours a segment is kept (`fileReservedTime`).
    pub file_reserved_time_hours: u64,
    /// Hours of the day when expired segments are deleted (`deleteWhen`, e.g. `04` or `04;16`).
    pub delete_when_hours: BTreeSet<u32>,
    /// Disk usage, in percent, above which the oldest segments are deleted at once
    /// (`diskMaxUsedSpaceRatio`).
    pub disk_max_used_space_ratio: u32,
    /// How often retention checks the segments (`cleanResourceInterval`, ms).
    pub clean_resource_interval_ms: u64,
}

/// A `key=value` pair with the line it came from.
#[derive(Clone, Debug)]
pub struct Property {
    /// The key as written.
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line in the source file, when there is one.
    pub line: Option<usize>,
}

impl Property {
    /// A property that did not come from a file.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Property {
            key: key.into(),
            value: value.into(),
            line: None,
        }
    }
}

/// Parses a Java-style properties text (RocketMQ's broker.conf): `key=value`, `key = value` or
/// `key: value` per line; lines starting with `#` or `!` are comments. Keeps the line numbers.
///
/// # Errors
/// A non-blank, non-comment line without a separator, naming the line.
pub fn parse_properties(text: &str) -> Result<Vec<Property>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            return Err(ConfigError::Invalid {
                key: line.to_string(),
                value: String::new(),
                line: Some(i + 1),
                reason: "expected key=value".into(),
            });
        };
        let (key, value) = (line[..at].trim(), line[at + 1..].trim());
        out.push(Property {
            key: key.to_string(),
            value: value.to_string(),
            line: Some(i + 1),
        });
    }
    Ok(out)
}

/// The keys raft-log reads from a broker.conf, in the order of its key table.
pub const KEYS: &[&str] = &KEY_NAMES;

const KEY_NAMES: [&str; KEY_TABLE.len()] = key_names();

const fn key_names() -> [&'static str; KEY_TABLE.len()] {
    let mut names = [""; KEY_TABLE.len()];
    let mut i = 0;
    while i < KEY_TABLE.len() {
        names[i] = KEY_TABLE[i].key;
        i += 1;
    }
    names
}

/// A value that is neither `true` nor `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be true or false")]
pub struct NotABool;

/// Parses a boolean setting the way every RaftMQ key does: `true` or `false` in any letter case,
/// as Java's `Boolean.parseBoolean` reads RocketMQ's files, but strict: anything else (`yes`,
/// `1`, empty) is an error instead of `false`.
///
/// # Errors
/// [`NotABool`] for any other value.
pub fn parse_bool(value: &str) -> Result<bool, NotABool> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(NotABool)
    }
}

impl Config {
    /// A configuration for `self_id` in `group` with every other setting at its default.
    ///
    /// # Errors
    /// When `peers` is not a valid `dLegerPeers` value or does not list `self_id`.
    pub fn new(
        group: impl Into<String>,
        peers: &str,
        self_id: impl Into<String>,
        store_root: impl Into<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let config = Config::defaults(
            group.into(),
            parse_peers(peers, None)?,
            self_id.into(),
            store_root.into(),
        );
        config.validate()?;
        Ok(config)
    }

    fn defaults(group: String, peers: Vec<Peer>, self_id: String, store_root: PathBuf) -> Config {
        let dir = store_root.join(format!("dledger-{self_id}"));
        Config {
            group,
            peers,
            self_id,
            store: StoreConfig::new(dir),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            enable_pre_vote: true,
            preferred_leader_ids: Vec::new(),
            max_pending_requests: 10_000,
            max_wait_ack_ms: 2_500,
            max_batch_entries: 4096,
            file_reserved_time_hours: 72,
            delete_when_hours: BTreeSet::from([4]),
            disk_max_used_space_ratio: 75,
            clean_resource_interval_ms: 10_000,
        }
    }

    /// The effective value of each key raft-log reads, as broker.conf values, in the order of
    /// its key table; keys without a value are left out. Read back with
    /// [`Config::from_properties`], they give the same configuration.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        KEY_TABLE
            .iter()
            .filter_map(|k| (k.print)(self).map(|v| (k.key, v)))
            .collect()
    }

    /// Reads the raft-log keys of a properties file. Returns the config and the properties
    /// raft-log did not use, so the caller can warn about or use them.
    ///
    /// # Errors
    /// A missing required key (`dLegerPeers`, `dLegerSelfId`) or an invalid value, naming the
    /// key and line.
    pub fn from_properties(props: &[Property]) -> Result<(Self, Vec<Property>), ConfigError> {
        let find = |key: &str| props.iter().rev().find(|p| p.key == key);
        let peers = find("dLegerPeers").ok_or(ConfigError::Missing { key: "dLegerPeers" })?;
        let self_id = find("dLegerSelfId").ok_or(ConfigError::Missing {
            key: "dLegerSelfId",
        })?;
        let group = find("dLegerGroup")
            .map(|p| p.value.clone())
            .unwrap_or_else(|| "default".into());
        let root = find("storePathRootDir")
            .map(|p| PathBuf::from(&p.value))
            .unwrap_or_else(default_store_root);
        let parsed_peers = parse_peers(&peers.value, peers.line)?;
        let mut config = Config::defaults(group, parsed_peers, self_id.value.clone(), root);
        let mut unused = Vec::new();
        for p in props {
            apply(&mut config, p, &mut unused)?;
        }
        config.validate().map_err(|e| attach_line(e, props))?;
        Ok((config, unused))
    }

    /// The numeric id of this node.
    ///
    /// # Panics
    /// Never after [`Config::validate`] succeeded, which checks that `self_id` is a peer.
    pub fn node_id(&self) -> u64 {
        self.peer(&self.self_id)
            .map(|p| p.node_id)
            .expect("validated: dLegerSelfId is a peer")
    }

    /// The peer with DLedger id `id`.
    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// The peer with numeric id `node_id`.
    pub fn peer_by_node_id(&self, node_id: u64) -> Option<&Peer> {
        self.peers.iter().find(|p| p.node_id == node_id)
    }

    /// The DLedger id of node `node_id` (`n<node_id>` for a node outside `dLegerPeers`).
    pub fn peer_label(&self, node_id: u64) -> String {
        self.peer_by_node_id(node_id)
            .map_or_else(|| format!("n{node_id}"), |p| p.id.clone())
    }

    /// This node's replication address.
    pub fn self_addr(&self) -> &str {
        self.peer(&self.self_id)
            .map(|p| p.addr.as_str())
            .unwrap_or_default()
    }

    /// Checks the relations between settings.
    ///
    /// # Errors
    /// Names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group.is_empty()
            || !self
                .group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_%.".contains(c))
        {
            return Err(invalid(
                "dLegerGroup",
                &self.group,
                "must be non-empty letters, digits, - _ . %",
            ));
        }
        if self.peer(&self.self_id).is_none() {
            return Err(invalid(
                "dLegerSelfId",
                &self.self_id,
                "is not one of the ids in dLegerPeers",
            ));
        }
        for id in &self.preferred_leader_ids {
            if self.peer(id).is_none() {
                return Err(invalid(
                    "preferredLeaderIds",
                    id,
                    "is not one of the ids in dLegerPeers",
                ));
            }
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(invalid("heartBeatTimeIntervalMs", 0, "must be positive"));
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return Err(invalid(
                "electionTimeoutMinMs",
                self.election_timeout_min_ms,
                format!(
                    "must exceed heartBeatTimeIntervalMs ({})",
                    self.heartbeat_interval_ms
                ),
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid(
                "electionTimeoutMaxMs",
                self.election_timeout_max_ms,
                format!(
                    "must exceed electionTimeoutMinMs ({})",
                    self.election_timeout_min_ms
                ),
            ));
        }
        if self.max_pending_requests == 0 {
            return Err(invalid("maxPendingRequestsNum", 0, "must be positive"));
        }
        if self.max_batch_entries == 0 {
            return Err(invalid("maxBatchAppendEntries", 0, "must be positive"));
        }
        if self.disk_max_used_space_ratio == 0 || self.disk_max_used_space_ratio > 95 {
            return Err(invalid(
                "diskMaxUsedSpaceRatio",
                self.disk_max_used_space_ratio,
                "must be 1..=95",
            ));
        }
        self.store.validate()
    }
}

fn default_store_root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("store")
}

fn invalid(key: &str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        line: None,
        reason: reason.into(),
    }
}

fn attach_line(e: ConfigError, props: &[Property]) -> ConfigError {
    match e {
        ConfigError::Invalid {
            key,
            value,
            line: None,
            reason,
        } => {
            let line = props
                .iter()
                .rev()
                .find(|p| p.key == key)
                .and_then(|p| p.line);
            ConfigError::Invalid {
                key,
                value,
                line,
                reason,
            }
        }
        other => other,
    }
}

/// Parses `n0-127.0.0.1:40911;n1-127.0.0.1:40912`: the id is the text before the first `-`.
fn parse_peers(value: &str, line: Option<usize>) -> Result<Vec<Peer>, ConfigError> {
    let bad = |reason: String| ConfigError::Invalid {
        key: "dLegerPeers".into(),
        value: value.into(),
        line,
        reason,
    };
    let mut peers: Vec<Peer> = Vec::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('-')
            .ok_or_else(|| bad(format!("{part:?} is not id-host:port")))?;
        let digits = id.trim_start_matches(|c: char| !c.is_ascii_digit());
        let node_id: u64 = digits
            .parse()
            .map_err(|_| bad(format!("id {id:?} must end in a number, like n0")))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("{addr:?} is not host:port")))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad(format!("{addr:?} is not host:port")));
        }
        if peers.iter().any(|p| p.id == id || p.node_id == node_id) {
            return Err(bad(format!("id {id:?} appears twice")));
        }
        peers.push(Peer {
            id: id.to_string(),
            node_id,
            addr: addr.to_string(),
        });
    }
    if peers.is_empty() {
        return Err(bad("lists no peer".into()));
    }
    Ok(peers)
}

/// Applies one property: by its key's row of [`KEY_TABLE`], or returns it as unused.
fn apply(config: &mut Config, p: &Property, unused: &mut Vec<Property>) -> Result<(), ConfigError> {
    match KEY_TABLE.iter().find(|k| k.key == p.key) {
        Some(k) => (k.apply)(config, p),
        None => {
            unused.push(p.clone());
            Ok(())
        }
    }
}

/// Reads a key's value into a [`Config`].
type Apply = fn(&mut Config, &Property) -> Result<(), ConfigError>;
/// Prints a key's effective value as a broker.conf value; `None` prints no line (RocketMQ prints
/// no line for a null value either).
type Print = fn(&Config) -> Option<String>;

/// One key raft-log reads.
struct KeySpec {
    /// The key as RocketMQ and DLedger spell it.
    key: &'static str,
    /// How its value is applied.
    apply: Apply,
    /// How its effective value is printed.
    print: Print,
    /// Whether it describes the Raft group (its name, members and leaders) rather than how a
    /// node stores and replicates: a broker running a group of one ignores these.
    describes_group: bool,
}

const fn key(key: &'static str, apply: Apply, print: Print) -> KeySpec {
    KeySpec {
        key,
        apply,
        print,
        describes_group: false,
    }
}

const fn group_key(key: &'static str, apply: Apply, print: Print) -> KeySpec {
    KeySpec {
        key,
        apply,
        print,
        describes_group: true,
    }
}

fn print_peers(c: &Config) -> Option<String> {
    let peers: Vec<String> = c
        .peers
        .iter()
        .map(|p| format!("{}-{}", p.id, p.addr))
        .collect();
    Some(peers.join(";"))
}

/// Unset prints no line, like RocketMQ's null values.
fn print_preferred_leaders(c: &Config) -> Option<String> {
    (!c.preferred_leader_ids.is_empty()).then(|| c.preferred_leader_ids.join(";"))
}

fn print_delete_when(c: &Config) -> Option<String> {
    let hours: Vec<String> = c
        .delete_when_hours
        .iter()
        .map(|h| format!("{h:02}"))
        .collect();
    Some(hours.join(";"))
}

/// Whether `key` is one of raft-log's keys that describe the Raft group (`dLegerGroup`,
/// `dLegerPeers`, `dLegerSelfId`, `preferredLeaderIds`): a broker running a group of one
/// ignores them.
pub fn describes_group(key: &str) -> bool {
    KEY_TABLE.iter().any(|k| k.key == key && k.describes_group)
}

/// Read before the table is applied (they place the store and name the group).
fn read_up_front(_: &mut Config, _: &Property) -> Result<(), ConfigError> {
    Ok(())
}

/// Every key raft-log reads: the one place where broker.conf names meet [`Config`] fields.
const KEY_TABLE: [KeySpec; 25] = [
    group_key("dLegerGroup", read_up_front, |c| Some(c.group.clone())),
    group_key("dLegerPeers", read_up_front, print_peers),
    group_key("dLegerSelfId", read_up_front, |c| Some(c.self_id.clone())),
    key("storePathRootDir", read_up_front, |c| {
        c.store.dir.parent().map(|d| d.display().to_string())
    }),
    // RocketMQ's commit log path; raft-log keeps its log under storePathRootDir.
    key("storePathCommitLog", read_up_front, |_| None),
    key(
        "mappedFileSizeForEntryData",
        |c, p| p.number().map(|n| c.store.data_segment_bytes = n),
        |c| Some(c.store.data_segment_bytes.to_string()),
    ),
    key(
        "mappedFileSizeForEntryIndex",
        |c, p| p.number().map(|n| c.store.index_segment_bytes = n),
        |c| Some(c.store.index_segment_bytes.to_string()),
    ),
    key(
        "flushDiskType",
        |c, p| {
            c.store.flush_disk_type = match p.value.as_str() {
                "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
                "SYNC_FLUSH" => FlushDiskType::SyncFlush,
                _ => return Err(p.invalid("must be ASYNC_FLUSH or SYNC_FLUSH")),
            };
            Ok(())
        },
        |c| Some(c.store.flush_disk_type.as_str().to_string()),
    ),
    key(
        "flushIntervalCommitLog",
        |c, p| {
            p.positive()
                .map(|n| c.store.flush_interval = Duration::from_millis(n))
        },
        |c| Some(c.store.flush_interval.as_millis().to_string()),
    ),
    key(
        "checkPointInterval",
        |c, p| {
            p.positive()
                .map(|n| c.store.checkpoint_interval = Duration::from_millis(n))
        },
        |c| Some(c.store.checkpoint_interval.as_millis().to_string()),
    ),
    key(
        "heartBeatTimeIntervalMs",
        |c, p| p.number().map(|n| c.heartbeat_interval_ms = n),
        |c| Some(c.heartbeat_interval_ms.to_string()),
    ),
    key(
        "electionTimeoutMinMs",
        |c, p| p.number().map(|n| c.election_timeout_min_ms = n),
        |c| Some(c.election_timeout_min_ms.to_string()),
    ),
    key(
        "electionTimeoutMaxMs",
        |c, p| p.number().map(|n| c.election_timeout_max_ms = n),
        |c| Some(c.election_timeout_max_ms.to_string()),
    ),
    key(
        "enablePreVote",
        |c, p| p.boolean().map(|b| c.enable_pre_vote = b),
        |c| Some(c.enable_pre_vote.to_string()),
    ),
    key(
        "enableCheckQuorum",
        |_, p| {
            if p.boolean()? {
                Ok(())
            } else {
                Err(p.invalid(
                    "check-quorum cannot be turned off: the leader lease is always enforced",
                ))
            }
        },
        |_| Some("true".to_string()),
    ),
    group_key(
        "preferredLeaderIds",
        set_preferred_leaders,
        print_preferred_leaders,
    ),
    // DLedger 0.3's spelling, which RocketMQ passes on.
    group_key("preferredLeaderId", set_preferred_leaders, |_| None),
    key(
        "maxPendingRequestsNum",
        |c, p| {
            let n = usize::try_from(p.number()?).map_err(|_| p.invalid("too large"))?;
            c.max_pending_requests = n;
            Ok(())
        },
        |c| Some(c.max_pending_requests.to_string()),
    ),
    key(
        "maxWaitAckTimeMs",
        |c, p| p.positive().map(|n| c.max_wait_ack_ms = n),
        |c| Some(c.max_wait_ack_ms.to_string()),
    ),
    key(
        "maxBatchAppendEntries",
        |c, p| p.number().map(|n| c.max_batch_entries = n),
        |c| Some(c.max_batch_entries.to_string()),
    ),
    key(
        "fileReservedTime",
        |c, p| p.number().map(|n| c.file_reserved_time_hours = n),
        |c| Some(c.file_reserved_time_hours.to_string()),
    ),
    key("deleteWhen", set_delete_when, print_delete_when),
    key(
        "diskMaxUsedSpaceRatio",
        |c, p| {
            let ratio = u32::try_from(p.number()?).map_err(|_| p.invalid("must be 1..=95"))?;
            c.disk_max_used_space_ratio = ratio;
            Ok(())
        },
        |c| Some(c.disk_max_used_space_ratio.to_string()),
    ),
    key(
        "cleanResourceInterval",
        |c, p| p.positive().map(|n| c.clean_resource_interval_ms = n),
        |c| Some(c.clean_resource_interval_ms.to_string()),
    ),
    key(
        "unsafeSkipFsync",
        |c, p| p.boolean().map(|b| c.store.unsafe_skip_fsync = b),
        |c| Some(c.store.unsafe_skip_fsync.to_string()),
    ),
];

fn set_preferred_leaders(config: &mut Config, p: &Property) -> Result<(), ConfigError> {
    config.preferred_leader_ids = p
        .value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(())
}

fn set_delete_when(config: &mut Config, p: &Property) -> Result<(), ConfigError> {
    let mut hours = BTreeSet::new();
    for h in p.value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let h: u32 = h
            .parse()
            .map_err(|_| p.invalid("must be hours of the day like 04 or 04;16"))?;
        if h > 23 {
            return Err(p.invalid("hours must be 00..23"));
        }
        hours.insert(h);
    }
    config.delete_when_hours = hours;
    Ok(())
}

impl Property {
    /// The error for this property's value, naming its key and line.
    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.key.clone(),
            value: self.value.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }

    fn number(&self) -> Result<u64, ConfigError> {
        self.value
            .parse::<u64>()
            .map_err(|_| self.invalid("must be a non-negative integer"))
    }

    fn positive(&self) -> Result<u64, ConfigError> {
        match self.number()? {
            0 => Err(self.invalid("must be positive")),
            n => Ok(n),
        }
    }

    /// The value as a boolean; see [`parse_bool`].
    ///
    /// # Errors
    /// Any value but `true` or `false` (in any letter case), naming the key and line.
    pub fn boolean(&self) -> Result<bool, ConfigError> {
        parse_bool(&self.value).map_err(|e| self.invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(lines: &[(&str, &str)]) -> Vec<Property> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Property {
                key: k.to_string(),
                value: v.to_string(),
                line: Some(i + 1),
            })
            .collect()
    }

    #[test]
    fn fast_try_peers_parse_with_ids_before_the_first_dash() {
        let (c, unused) = Config::from_properties(&props(&[
            ("dLegerGroup", "RaftNode00"),
            (
                "dLegerPeers",
                "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913",
            ),
            ("dLegerSelfId", "n1"),
            ("listenPort", "30921"),
        ]))
        .unwrap();
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.node_id(), 1);
        assert_eq!(c.self_addr(), "127.0.0.1:40912");
        assert_eq!(unused.len(), 1);
        assert_eq!(unused[0].key, "listenPort");
        assert!(c.store.dir.ends_with("dledger-n1"));
        assert_eq!(
            (
                c.election_timeout_min_ms,
                c.election_timeout_max_ms,
                c.heartbeat_interval_ms
            ),
            (150, 300, 50)
        );
    }

    #[test]
    fn the_unsafe_skip_fsync_control_is_off_unless_asked_for() {
        let base = [
            ("dLegerPeers", "n0-127.0.0.1:40911"),
            ("dLegerSelfId", "n0"),
        ];
        let (c, _) = Config::from_properties(&props(&base)).unwrap();
        assert!(!c.store.unsafe_skip_fsync);
        let mut on = base.to_vec();
        on.push(("unsafeSkipFsync", "true"));
        let (c, _) = Config::from_properties(&props(&on)).unwrap();
        assert!(c.store.unsafe_skip_fsync);
        let mut bad = base.to_vec();
        bad.push(("unsafeSkipFsync", "sometimes"));
        let e = Config::from_properties(&props(&bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsafeSkipFsync") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn booleans_ignore_letter_case_and_refuse_anything_else() {
        // Regression: enablePreVote=TRUE was refused while the broker read
        // autoCreateTopicEnable=TRUE; every boolean now parses the same way.
        let base = [
            ("dLegerPeers", "n0-127.0.0.1:40911"),
            ("dLegerSelfId", "n0"),
        ];
        for (value, expected) in [("TRUE", true), ("True", true), ("false", false)] {
            let mut lines = base.to_vec();
            lines.push(("enablePreVote", value));
            let (c, _) = Config::from_properties(&props(&lines)).unwrap();
            assert_eq!(c.enable_pre_vote, expected, "{value}");
        }
        for value in ["yes", "1", ""] {
            let mut lines = base.to_vec();
            lines.push(("enablePreVote", value));
            let e = Config::from_properties(&props(&lines))
                .unwrap_err()
                .to_string();
            assert!(e.contains("enablePreVote") && e.contains("line 3"), "{e}");
        }
        assert_eq!(parse_bool("FALSE"), Ok(false));
        assert_eq!(parse_bool("yes"), Err(NotABool));
    }

    #[test]
    fn every_key_of_the_table_is_applied_by_its_row() {
        assert_eq!(KEYS.len(), KEY_TABLE.len());
        for k in &KEY_TABLE {
            let mut c = Config::new("g", "n0-127.0.0.1:1", "n0", "/tmp/unused").unwrap();
            let mut unused = Vec::new();
            // The row is found (the value may be refused, which is fine here).
            let _ = apply(&mut c, &Property::new(k.key, "1"), &mut unused);
            assert!(unused.is_empty(), "{} is not applied", k.key);
        }
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), KEYS.len(), "a key is listed twice");
    }

    #[test]
    fn printed_properties_read_back_to_the_same_config() {
        let (c, unused) = Config::from_properties(&props(&[
            ("dLegerGroup", "g1"),
            (
                "dLegerPeers",
                "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913",
            ),
            ("dLegerSelfId", "n1"),
            ("storePathRootDir", "/tmp/raftmq-print"),
            ("preferredLeaderIds", "n2;n0"),
            ("deleteWhen", "04;16"),
            ("flushDiskType", "SYNC_FLUSH"),
            ("enablePreVote", "false"),
            ("maxWaitAckTimeMs", "1234"),
        ]))
        .unwrap();
        assert!(unused.is_empty());
        let printed = c.properties();
        let value = |k: &str| {
            printed
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("storePathRootDir"), Some("/tmp/raftmq-print"));
        assert_eq!(value("deleteWhen"), Some("04;16"));
        assert_eq!(value("preferredLeaderIds"), Some("n2;n0"));
        assert_eq!(
            value("preferredLeaderId"),
            None,
            "printed under the new spelling only"
        );
        let lines: Vec<Property> = printed
            .iter()
            .map(|(k, v)| Property::new(*k, v.clone()))
            .collect();
        let (again, unused) = Config::from_properties(&lines).unwrap();
        assert!(unused.is_empty());
        assert_eq!(again.properties(), printed);
        assert_eq!(format!("{again:?}"), format!("{c:?}"));
    }

    #[test]
    fn only_the_group_keys_describe_the_group() {
        let group: Vec<&str> = KEYS
            .iter()
            .copied()
            .filter(|k| describes_group(k))
            .collect();
        assert_eq!(
            group,
            [
                "dLegerGroup",
                "dLegerPeers",
                "dLegerSelfId",
                "preferredLeaderIds",
                "preferredLeaderId"
            ]
        );
        assert!(!describes_group("flushDiskType"));
        assert!(!describes_group("brokerName"));
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let e = Config::from_properties(&props(&[
            ("dLegerPeers", "n0-127.0.0.1:40911"),
            ("dLegerSelfId", "n0"),
            ("flushDiskType", "SOMETIMES"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("flushDiskType") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn relation_errors_name_the_key_and_line() {
        let e = Config::from_properties(&props(&[
            ("dLegerPeers", "n0-127.0.0.1:40911"),
            ("dLegerSelfId", "n0"),
            ("electionTimeoutMaxMs", "100"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("electionTimeoutMaxMs") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn fast_try_conf_files_parse() {
        for i in 0..3 {
            let path = format!(
                "{}/../conf/dledger/broker-n{i}.conf",
                env!("CARGO_MANIFEST_DIR")
            );
            let props = parse_properties(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let (c, unused) = Config::from_properties(&props).unwrap();
            assert_eq!(c.self_id, format!("n{i}"));
            assert_eq!(c.group, "RaftNode00");
            assert!(unused.iter().any(|p| p.key == "listenPort"), "{path}");
        }
    }

    #[test]
    fn properties_keep_line_numbers_and_skip_comments() {
        let props = parse_properties("# c\n\n a = 1\nb:2\n! x\nc=").unwrap();
        let got: Vec<_> = props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            [("a", "1", Some(3)), ("b", "2", Some(4)), ("c", "", Some(6))]
        );
        let e = parse_properties("a=1\nnonsense").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn self_id_must_be_a_peer() {
        let e = Config::new("g", "n0-127.0.0.1:1;n1-127.0.0.1:2", "n7", "/tmp/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dLegerSelfId"), "{e}");
    }

    #[test]
    fn malformed_peers_are_rejected() {
        for bad in [
            "",
            "n0:127.0.0.1:1",
            "nx-127.0.0.1:1",
            "n0-127.0.0.1",
            "n0-h:1;n0-h:2",
        ] {
            let e = Config::new("g", bad, "n0", "/tmp/x")
                .unwrap_err()
                .to_string();
            assert!(e.contains("dLegerPeers"), "{bad}: {e}");
        }
    }
}
