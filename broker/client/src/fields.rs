//! Protobuf field values every request needs: resources, timestamps, durations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::apache::rocketmq::v2;

/// The current time as a protobuf timestamp.
pub fn timestamp_now() -> prost_types::Timestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
    }
}

/// `ms` since the epoch as a protobuf timestamp.
pub fn timestamp_of_ms(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// `d` as a protobuf duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A topic or group name in the default namespace.
pub fn resource(name: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: String::new(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_sub_second_part() {
        let d = duration(Duration::from_millis(2500));
        assert_eq!((d.seconds, d.nanos), (2, 500_000_000));
        assert_eq!(resource("T").name, "T");
        assert!(timestamp_now().seconds > 1_600_000_000);
        let t = timestamp_of_ms(1_700_000_000_250);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 250_000_000));
    }
}
