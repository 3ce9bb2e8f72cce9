//! Request and response codes (RocketMQ's `RequestCode` and `ResponseCode`), by their names.

/// Request codes a client or broker sends.
pub mod request {
    /// Send one message (v1 header: long field names).
    pub const SEND_MESSAGE: i32 = 10;
    /// Pull messages from a queue at an offset.
    pub const PULL_MESSAGE: i32 = 11;
    /// Messages by key.
    pub const QUERY_MESSAGE: i32 = 12;
    /// A group's consumer offset of one queue.
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    /// Commit a group's consumer offset of one queue.
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    /// Create or update a topic on a broker.
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    /// A broker's runtime statistics.
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    /// The queue offset of the first message stored at or after a time.
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    /// A queue's max (next) offset.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// A queue's min offset.
    pub const GET_MIN_OFFSET: i32 = 31;
    /// One message by its offset message id.
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    /// A client's heartbeat with its producer and consumer groups.
    pub const HEART_BEAT: i32 = 34;
    /// A client leaves.
    pub const UNREGISTER_CLIENT: i32 = 35;
    /// A consumer hands a message back for a retry.
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    /// Commit or roll back a half message.
    pub const END_TRANSACTION: i32 = 37;
    /// The client ids of a consumer group.
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// Broker to client: is this half message's local transaction committed?
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// Broker to client: the members of a group changed.
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    /// Lock queues for an orderly consumer.
    pub const LOCK_BATCH_MQ: i32 = 41;
    /// Release queue locks.
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    /// Put a NameServer KV config.
    pub const PUT_KV_CONFIG: i32 = 100;
    /// Get a NameServer KV config.
    pub const GET_KV_CONFIG: i32 = 101;
    /// Delete a NameServer KV config.
    pub const DELETE_KV_CONFIG: i32 = 102;
    /// A broker registers at a NameServer.
    pub const REGISTER_BROKER: i32 = 103;
    /// A broker leaves a NameServer.
    pub const UNREGISTER_BROKER: i32 = 104;
    /// The route of a topic.
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// Clusters and brokers.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Create or replace a subscription group's config on a broker.
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    /// Every subscription group's config on a broker.
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    /// The clients of a consumer group connected to a broker.
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    /// The clients of a producer group connected to a broker.
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    /// Every topic the NameServer knows.
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    /// Delete a subscription group's config on a broker.
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    /// The KV configs of a namespace.
    pub const GET_KVLIST_BY_NAMESPACE: i32 = 219;
    /// The topics of a cluster.
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    /// Send one message (v2 header: one-letter field names).
    pub const SEND_MESSAGE_V2: i32 = 310;
    /// Send a batch of messages in one body.
    pub const SEND_BATCH_MESSAGE: i32 = 320;
}

/// Response codes.
pub mod response {
    /// Done.
    pub const SUCCESS: i32 = 0;
    /// Failed inside the server.
    pub const SYSTEM_ERROR: i32 = 1;
    /// Too busy: try again later.
    pub const SYSTEM_BUSY: i32 = 2;
    /// The code is not served here.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// Stored, but not replicated in time (unknown outcome).
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    /// The message is refused (size, name, properties).
    pub const MESSAGE_ILLEGAL: i32 = 13;
    /// Not serving now (no leader, disk full).
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    /// Permission denied.
    pub const NO_PERMISSION: i32 = 16;
    /// The topic does not exist.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// Pull: nothing at the offset yet.
    pub const PULL_NOT_FOUND: i32 = 19;
    /// Pull: try again at once (filtered everything).
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    /// Pull: the offset is outside the queue; start at `nextBeginOffset`.
    pub const PULL_OFFSET_MOVED: i32 = 21;
    /// Query: nothing found.
    pub const QUERY_NOT_FOUND: i32 = 22;
    /// The subscription's expression does not parse.
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    /// The group has no such subscription.
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    /// The group is unknown.
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    /// No client of the consumer group is connected.
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
}
