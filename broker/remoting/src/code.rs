//! Request and response codes (RocketMQ's `RequestCode` and `ResponseCode`), by their names.

/// Each code as a constant, and `name(code)`: its constant's name, as RocketMQ's
/// `RemotingHelper` prints codes in metrics (lowercased there).
macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident = $value:literal;)*) => {
        $($(#[doc = $doc])* pub const $name: i32 = $value;)*

        /// The constant's name of `code` (`SEND_MESSAGE` for 10); `None` for a code not
        /// listed here.
        pub fn name(code: i32) -> Option<&'static str> {
            match code {
                $($value => Some(stringify!($name)),)*
                _ => None,
            }
        }
    };
}

/// Request codes a client or broker sends.
pub mod request {
    codes! {
        /// Send one message (v1 header: long field names).
        SEND_MESSAGE = 10;
        /// Pull messages from a queue at an offset.
        PULL_MESSAGE = 11;
        /// Messages by key.
        QUERY_MESSAGE = 12;
        /// A group's consumer offset of one queue.
        QUERY_CONSUMER_OFFSET = 14;
        /// Commit a group's consumer offset of one queue.
        UPDATE_CONSUMER_OFFSET = 15;
        /// Create or update a topic on a broker.
        UPDATE_AND_CREATE_TOPIC = 17;
        /// A broker's runtime statistics.
        GET_BROKER_RUNTIME_INFO = 28;
        /// The queue offset of the first message stored at or after a time.
        SEARCH_OFFSET_BY_TIMESTAMP = 29;
        /// A queue's max (next) offset.
        GET_MAX_OFFSET = 30;
        /// A queue's min offset.
        GET_MIN_OFFSET = 31;
        /// One message by its offset message id.
        VIEW_MESSAGE_BY_ID = 33;
        /// A client's heartbeat with its producer and consumer groups.
        HEART_BEAT = 34;
        /// A client leaves.
        UNREGISTER_CLIENT = 35;
        /// A consumer hands a message back for a retry.
        CONSUMER_SEND_MSG_BACK = 36;
        /// Commit or roll back a half message.
        END_TRANSACTION = 37;
        /// The client ids of a consumer group.
        GET_CONSUMER_LIST_BY_GROUP = 38;
        /// Broker to client: is this half message's local transaction committed?
        CHECK_TRANSACTION_STATE = 39;
        /// Broker to client: the members of a group changed.
        NOTIFY_CONSUMER_IDS_CHANGED = 40;
        /// Lock queues for an orderly consumer.
        LOCK_BATCH_MQ = 41;
        /// Release queue locks.
        UNLOCK_BATCH_MQ = 42;
        /// Put a NameServer KV config.
        PUT_KV_CONFIG = 100;
        /// Get a NameServer KV config.
        GET_KV_CONFIG = 101;
        /// Delete a NameServer KV config.
        DELETE_KV_CONFIG = 102;
        /// A broker registers at a NameServer.
        REGISTER_BROKER = 103;
        /// A broker leaves a NameServer.
        UNREGISTER_BROKER = 104;
        /// The route of a topic.
        GET_ROUTEINFO_BY_TOPIC = 105;
        /// Clusters and brokers.
        GET_BROKER_CLUSTER_INFO = 106;
        /// Create or replace a subscription group's config on a broker.
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200;
        /// Every subscription group's config on a broker.
        GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201;
        /// The clients of a consumer group connected to a broker.
        GET_CONSUMER_CONNECTION_LIST = 203;
        /// The clients of a producer group connected to a broker.
        GET_PRODUCER_CONNECTION_LIST = 204;
        /// Every topic the NameServer knows.
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206;
        /// Delete a subscription group's config on a broker.
        DELETE_SUBSCRIPTIONGROUP = 207;
        /// The KV configs of a namespace.
        GET_KVLIST_BY_NAMESPACE = 219;
        /// The topics of a cluster.
        GET_TOPICS_BY_CLUSTER = 224;
        /// Send one message (v2 header: one-letter field names).
        SEND_MESSAGE_V2 = 310;
        /// Send a batch of messages in one body.
        SEND_BATCH_MESSAGE = 320;
    }
}

/// Response codes.
pub mod response {
    codes! {
        /// Done.
        SUCCESS = 0;
        /// Failed inside the server.
        SYSTEM_ERROR = 1;
        /// Too busy: try again later.
        SYSTEM_BUSY = 2;
        /// The code is not served here.
        REQUEST_CODE_NOT_SUPPORTED = 3;
        /// Stored, but not replicated in time (unknown outcome).
        FLUSH_SLAVE_TIMEOUT = 12;
        /// The message is refused (size, name, properties).
        MESSAGE_ILLEGAL = 13;
        /// Not serving now (no leader, disk full).
        SERVICE_NOT_AVAILABLE = 14;
        /// Permission denied.
        NO_PERMISSION = 16;
        /// The topic does not exist.
        TOPIC_NOT_EXIST = 17;
        /// Pull: nothing at the offset yet.
        PULL_NOT_FOUND = 19;
        /// Pull: try again at once (filtered everything).
        PULL_RETRY_IMMEDIATELY = 20;
        /// Pull: the offset is outside the queue; start at `nextBeginOffset`.
        PULL_OFFSET_MOVED = 21;
        /// Query: nothing found.
        QUERY_NOT_FOUND = 22;
        /// The subscription's expression does not parse.
        SUBSCRIPTION_PARSE_FAILED = 23;
        /// The group has no such subscription.
        SUBSCRIPTION_NOT_EXIST = 24;
        /// The group is unknown.
        SUBSCRIPTION_GROUP_NOT_EXIST = 26;
        /// No client of the consumer group is connected.
        CONSUMER_NOT_ONLINE = 206;
    }
}
