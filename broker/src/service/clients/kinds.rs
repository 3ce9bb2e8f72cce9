//! RocketMQ's names for what a client says about itself: `ConsumeType`, `MessageModel`,
//! `ConsumeFromWhere` and `MQVersion.Version`, as RocketMQ's heartbeats carry them (a name, or
//! the C++ client's ordinal) and its tools print them.

use std::sync::LazyLock;

/// An enum of RocketMQ's, its variants in RocketMQ's order (the ordinals clients send).
macro_rules! rocketmq_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            const ALL: &[($name, &str)] = &[$(($name::$variant, $text),)+];

            /// RocketMQ's name.
            pub fn name(self) -> &'static str {
                Self::ALL.iter().find(|(v, _)| *v == self).map_or("", |(_, n)| n)
            }

            /// The variant RocketMQ names `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
            }

            /// The variant at RocketMQ's `ordinal`.
            pub fn from_ordinal(ordinal: u64) -> Option<Self> {
                let i = usize::try_from(ordinal).ok()?;
                Self::ALL.get(i).map(|(v, _)| *v)
            }
        }
    };
}

rocketmq_enum! {
    /// How a consumer takes its messages (RocketMQ's `ConsumeType`).
    ConsumeType {
        /// A pull consumer, or a 5.x simple consumer.
        Actively = "CONSUME_ACTIVELY",
        /// A push consumer.
        Passively = "CONSUME_PASSIVELY",
        /// A pop consumer.
        Pop = "CONSUME_POP",
    }
}

rocketmq_enum! {
    /// Whether a group's consumers share its messages (RocketMQ's `MessageModel`).
    MessageModel {
        /// Every consumer gets every message.
        Broadcasting = "BROADCASTING",
        /// Each message goes to one consumer of the group.
        Clustering = "CLUSTERING",
    }
}

rocketmq_enum! {
    /// Where a new consumer group starts (RocketMQ's `ConsumeFromWhere`).
    ConsumeFromWhere {
        /// After the last message.
        LastOffset = "CONSUME_FROM_LAST_OFFSET",
        /// Deprecated in RocketMQ.
        LastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        /// Deprecated in RocketMQ.
        MinOffset = "CONSUME_FROM_MIN_OFFSET",
        /// Deprecated in RocketMQ.
        MaxOffset = "CONSUME_FROM_MAX_OFFSET",
        /// At the first message still stored.
        FirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        /// At a time.
        Timestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

/// RocketMQ's `MQVersion.Version` names by ordinal: 16 pre-releases of 3.0.0, then a
/// `_SNAPSHOT` and a release of each version (3.0.1–3.0.15, 3.1.0–3.2.9, 3.3.1–3.9.9,
/// 4.0.0–5.9.9), then `HIGHER_VERSION`.
static VERSION_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names: Vec<String> = ["V3_0_0_SNAPSHOT", "V3_0_0_ALPHA1"]
        .iter()
        .map(|n| (*n).to_string())
        .collect();
    names.extend((1..=5).map(|b| format!("V3_0_0_BETA{b}")));
    for b in 6..=9 {
        names.push(format!("V3_0_0_BETA{b}_SNAPSHOT"));
        names.push(format!("V3_0_0_BETA{b}"));
    }
    names.push("V3_0_0_FINAL".into());
    let releases = (1..=15)
        .map(|p| (3, 0, p))
        .chain((1..=2).flat_map(|m| (0..=9).map(move |p| (3, m, p))))
        .chain((3..=9).flat_map(|m| (1..=9).map(move |p| (3, m, p))))
        .chain((4..=5).flat_map(|v| (0..=9).flat_map(move |m| (0..=9).map(move |p| (v, m, p)))));
    for (v, m, p) in releases {
        names.push(format!("V{v}_{m}_{p}_SNAPSHOT"));
        names.push(format!("V{v}_{m}_{p}"));
    }
    names.push("HIGHER_VERSION".into());
    names
});

/// The version a 4.x client's `version` header field names, as RocketMQ's tools print it
/// (`MQVersion.getVersionDesc`: ordinals past the table are `HIGHER_VERSION`).
pub fn version_name(ordinal: i32) -> String {
    let Ok(i) = usize::try_from(ordinal) else {
        return ordinal.to_string();
    };
    let names = &*VERSION_NAMES;
    names.get(i).or(names.last()).cloned().unwrap_or_default()
}

/// The ordinal of a version RocketMQ names `name`.
pub fn version_ordinal(name: &str) -> Option<i32> {
    let i = VERSION_NAMES.iter().position(|n| n == name)?;
    i32::try_from(i).ok()
}

/// A 5.x client's `x-mq-client-version` as RocketMQ names versions: `5.0.7` (what the SDKs
/// send) → `V5_0_7`, a name as it is; anything else as sent. (RocketMQ's proxy parses only
/// names and reports its own version otherwise.)
pub fn grpc_version(header: &str) -> String {
    let upper = header.trim().to_ascii_uppercase();
    let named = if upper.starts_with('V') {
        upper
    } else {
        format!("V{}", upper.replace('.', "_"))
    };
    if version_ordinal(&named).is_some() {
        named
    } else {
        header.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_match_rocketmqs_ordinals() {
        // Ordinals from RocketMQ's MQVersion.java (5.3.3).
        assert_eq!(version_name(0), "V3_0_0_SNAPSHOT");
        assert_eq!(version_name(15), "V3_0_0_FINAL");
        assert_eq!(version_name(137), "V3_5_8");
        assert_eq!(version_name(213), "V4_0_0");
        assert_eq!(version_name(401), "V4_9_4");
        assert_eq!(version_name(413), "V5_0_0");
        assert_eq!(version_name(612), "HIGHER_VERSION");
        assert_eq!(version_name(9999), "HIGHER_VERSION");
        assert_eq!(VERSION_NAMES.len(), 613);
        assert_eq!(version_ordinal("V4_9_4"), Some(401));
        assert_eq!(version_ordinal("5.0.0"), None);
    }

    #[test]
    fn sdk_versions_read_as_rocketmq_names() {
        assert_eq!(grpc_version("5.0.7"), "V5_0_7");
        assert_eq!(grpc_version("v5_1_0"), "V5_1_0");
        assert_eq!(grpc_version("0.1.0"), "0.1.0");
        assert_eq!(grpc_version(""), "");
    }

    #[test]
    fn enums_read_names_and_ordinals() {
        assert_eq!(ConsumeType::from_ordinal(1), Some(ConsumeType::Passively));
        assert_eq!(ConsumeType::Actively.name(), "CONSUME_ACTIVELY");
        assert_eq!(
            MessageModel::from_ordinal(1),
            Some(MessageModel::Clustering)
        );
        assert_eq!(
            ConsumeFromWhere::from_name("CONSUME_FROM_FIRST_OFFSET"),
            Some(ConsumeFromWhere::FirstOffset)
        );
        assert_eq!(
            ConsumeFromWhere::from_ordinal(5),
            Some(ConsumeFromWhere::Timestamp)
        );
        assert_eq!(ConsumeFromWhere::from_ordinal(6), None);
    }
}
