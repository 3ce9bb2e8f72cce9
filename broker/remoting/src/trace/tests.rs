#![allow(clippy::unwrap_used)]

use super::*;

fn pub_record() -> PubRecord {
    PubRecord {
        timestamp_ms: 1_700_000_000_000,
        region_id: DEFAULT_TRACE_REGION_ID.into(),
        group: "ProducerGroupA".into(),
        topic: "TopicTest".into(),
        msg_id: "7F0000010BB818B4AAC27D5B0E4B0000".into(),
        tags: "TagA".into(),
        keys: "OrderID188 k2".into(),
        store_host: "192.168.0.5:10911".into(),
        body_length: 11,
        cost_time_ms: 5,
        msg_type: MessageType::NormalMsg,
        offset_msg_id: Some("C0A8000500002A9F00000000000004D2".into()),
        success: true,
        client_host: None,
    }
}

fn decoded(body: &str) -> Vec<TraceRecord> {
    decode(body).map(Result::unwrap).collect()
}

/// One record of each type, and the layouts the encoder chooses between.
fn every_kind() -> Vec<TraceRecord> {
    vec![
        TraceRecord::Pub(pub_record()),
        TraceRecord::Pub(PubRecord {
            client_host: Some("10.0.0.7".into()),
            msg_type: MessageType::TransMsgHalf,
            ..pub_record()
        }),
        TraceRecord::Pub(PubRecord {
            offset_msg_id: None,
            success: false,
            ..pub_record()
        }),
        TraceRecord::SubBefore(SubBeforeRecord {
            timestamp_ms: 1_700_000_000_050,
            region_id: DEFAULT_TRACE_REGION_ID.into(),
            group: "ConsumerGroupA".into(),
            request_id: "0A0000070000000000000001".into(),
            msg_id: "7F0000010BB818B4AAC27D5B0E4B0000".into(),
            retry_times: 2,
            keys: "OrderID188".into(),
            client_host: None,
        }),
        TraceRecord::SubAfter(SubAfterRecord {
            request_id: "0A0000070000000000000001".into(),
            msg_id: "7F0000010BB818B4AAC27D5B0E4B0000".into(),
            cost_time_ms: 12,
            success: true,
            keys: "OrderID188".into(),
            context_code: 0,
            timestamp_ms: Some(1_700_000_000_062),
            group: "ConsumerGroupA".into(),
        }),
        TraceRecord::SubAfter(SubAfterRecord {
            request_id: "r".into(),
            msg_id: "m".into(),
            cost_time_ms: 3,
            success: false,
            keys: String::new(),
            context_code: 4,
            timestamp_ms: None,
            group: String::new(),
        }),
        TraceRecord::EndTransaction(EndTransactionRecord {
            timestamp_ms: 1_700_000_000_100,
            region_id: DEFAULT_TRACE_REGION_ID.into(),
            group: "TxGroup".into(),
            topic: "TopicTx".into(),
            msg_id: "m-tx".into(),
            tags: String::new(),
            keys: "k".into(),
            store_host: "127.0.0.1:10911".into(),
            msg_type: MessageType::TransMsgCommit,
            transaction_id: "m-tx".into(),
            transaction_state: TransactionState::RollbackMessage,
            from_transaction_check: true,
        }),
        TraceRecord::Recall(RecallRecord {
            timestamp_ms: 1_700_000_000_200,
            region_id: DEFAULT_TRACE_REGION_ID.into(),
            group: String::new(),
            topic: "TopicDelay".into(),
            msg_id: "m-delay".into(),
            success: true,
        }),
    ]
}

#[test]
fn every_kind_round_trips() {
    let records = every_kind();
    assert_eq!(decoded(&encode(&records)), records);
}

#[test]
fn the_encoder_writes_rocketmqs_layouts() {
    let body = encode(&every_kind());
    let lines: Vec<Vec<&str>> = body
        .split(FIELD_SPLITOR)
        .filter(|r| !r.is_empty())
        .map(|r| r.split(CONTENT_SPLITOR).collect())
        .collect();
    let counts: Vec<usize> = lines.iter().map(Vec::len).collect();
    // Pub 14 (RocketMQ 5's), Pub 15 (with client host), Pub 13, SubBefore 8, SubAfter 9, the
    // cloud SubAfter `…code\u{1}` (8 parts, the last empty), EndTransaction 13, Recall 7.
    assert_eq!(counts, [14, 15, 13, 8, 9, 8, 13, 7]);
    assert_eq!(lines[1][11], "1", "Trans_Msg_Half's ordinal");
    assert_eq!(lines[1][14], "10.0.0.7");
    assert_eq!(
        lines[4][3..],
        [
            "12",
            "true",
            "OrderID188",
            "0",
            "1700000000062",
            "ConsumerGroupA"
        ]
    );
    assert_eq!(lines[5][7], "");
    assert_eq!(lines[6][11], "ROLLBACK_MESSAGE");
    assert!(body.ends_with(FIELD_SPLITOR));
}

/// A body as a RocketMQ 4.9 / 5.x client's AsyncTraceDispatcher sends it, written by hand from
/// TraceDataEncoder.encoderFromContextBean: a Pub (tags null, as Java appends a null String),
/// the consumer's SubBefore and its SubAfter.
#[test]
fn a_body_as_rocketmqs_client_encodes_it_decodes() {
    let body = "Pub\u{1}1700000000000\u{1}DefaultRegion\u{1}ProducerGroupA\u{1}TopicTest\u{1}\
                7F0000010BB818B4AAC27D5B0E4B0000\u{1}null\u{1}OrderID188\u{1}192.168.0.5:10911\u{1}\
                11\u{1}5\u{1}0\u{1}C0A8000500002A9F00000000000004D2\u{1}true\u{2}\
                SubBefore\u{1}1700000000050\u{1}DefaultRegion\u{1}ConsumerGroupA\u{1}\
                0A00000712D518B4AAC27D5B0F110001\u{1}7F0000010BB818B4AAC27D5B0E4B0000\u{1}0\u{1}\
                OrderID188\u{2}\
                SubAfter\u{1}0A00000712D518B4AAC27D5B0F110001\u{1}7F0000010BB818B4AAC27D5B0E4B0000\
                \u{1}12\u{1}true\u{1}OrderID188\u{1}0\u{1}1700000000062\u{1}ConsumerGroupA\u{2}";
    let records = decoded(body);
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0],
        TraceRecord::Pub(PubRecord {
            tags: "null".into(),
            keys: "OrderID188".into(),
            ..pub_record()
        })
    );
    let TraceRecord::SubBefore(before) = &records[1] else {
        panic!("{:?}", records[1]);
    };
    assert_eq!(
        (
            before.group.as_str(),
            before.retry_times,
            before.keys.as_str()
        ),
        ("ConsumerGroupA", 0, "OrderID188")
    );
    assert_eq!(
        records[2],
        TraceRecord::SubAfter(SubAfterRecord {
            request_id: "0A00000712D518B4AAC27D5B0F110001".into(),
            msg_id: "7F0000010BB818B4AAC27D5B0E4B0000".into(),
            cost_time_ms: 12,
            success: true,
            keys: "OrderID188".into(),
            context_code: 0,
            timestamp_ms: Some(1_700_000_000_062),
            group: "ConsumerGroupA".into(),
        })
    );
}

/// The older layouts RocketMQ's decoder still reads, and records whose empty last fields
/// Java's `split` dropped.
#[test]
fn older_and_shortened_layouts_decode() {
    let pub13 =
        "Pub\u{1}1\u{1}r\u{1}g\u{1}t\u{1}m\u{1}\u{1}\u{1}h\u{1}3\u{1}4\u{1}3\u{1}false\u{2}";
    let TraceRecord::Pub(p) = &decoded(pub13)[0] else {
        panic!()
    };
    assert_eq!((p.offset_msg_id.as_deref(), p.success), (None, false));
    assert_eq!(p.msg_type, MessageType::DelayMsg);
    let pub12 = "Pub\u{1}1\u{1}r\u{1}g\u{1}t\u{1}m\u{1}a\u{1}b\u{1}h\u{1}3\u{1}4\u{1}4";
    let TraceRecord::Pub(p) = &decoded(pub12)[0] else {
        panic!()
    };
    assert_eq!((p.offset_msg_id.as_deref(), p.success), (None, true));
    let pub15 = "Pub\u{1}1\u{1}r\u{1}g\u{1}t\u{1}m\u{1}a\u{1}b\u{1}h\u{1}3\u{1}4\u{1}0\u{1}o\u{1}TRUE\u{1}c";
    let TraceRecord::Pub(p) = &decoded(pub15)[0] else {
        panic!()
    };
    assert_eq!(
        (
            p.offset_msg_id.as_deref(),
            p.success,
            p.client_host.as_deref()
        ),
        (Some("o"), true, Some("c"))
    );
    // 4.8's SubBefore with the client host; a SubBefore without keys (7 parts after Java's
    // split, which RocketMQ's own decoder fails on).
    let TraceRecord::SubBefore(b) =
        &decoded("SubBefore\u{1}1\u{1}r\u{1}g\u{1}q\u{1}m\u{1}0\u{1}k\u{1}c")[0]
    else {
        panic!()
    };
    assert_eq!(b.client_host.as_deref(), Some("c"));
    let TraceRecord::SubBefore(b) = &decoded("SubBefore\u{1}1\u{1}r\u{1}g\u{1}q\u{1}m\u{1}1")[0]
    else {
        panic!()
    };
    assert_eq!((b.keys.as_str(), b.retry_times), ("", 1));
    // SubAfter of 6 (before the context code), 7 (cloud, after Java's split).
    let TraceRecord::SubAfter(a) = &decoded("SubAfter\u{1}q\u{1}m\u{1}9\u{1}true\u{1}k")[0] else {
        panic!()
    };
    assert_eq!(
        (a.context_code, a.timestamp_ms, a.group.as_str()),
        (0, None, "")
    );
    let TraceRecord::SubAfter(a) = &decoded("SubAfter\u{1}q\u{1}m\u{1}9\u{1}true\u{1}k\u{1}2")[0]
    else {
        panic!()
    };
    assert_eq!((a.context_code, a.cost_time_ms), (2, 9));
}

#[test]
fn a_bad_record_is_an_error_of_its_own() {
    let good = encode(&[TraceRecord::Pub(pub_record())]);
    let body = format!(
        "Pub\u{1}yesterday\u{1}r\u{1}g\u{1}t\u{1}m\u{1}a\u{1}b\u{1}h\u{1}3\u{1}4\u{1}0\u{1}o\u{1}true\u{2}\
         {good}SubAfter\u{1}q\u{2}Hello\u{2}\u{2}Pub\u{1}1\u{1}r\u{1}g\u{1}t\u{1}m\u{1}a\u{1}b\u{1}h\
         \u{1}3\u{1}4\u{1}9\u{2}"
    );
    let results: Vec<_> = decode(&body).collect();
    assert_eq!(results.len(), 5, "the empty record is skipped: {results:?}");
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(
        errors,
        [
            "trace record 0 (\"Pub\"): field 1 (timestamp) \"yesterday\" is not a number",
            "trace record 2 (\"SubAfter\"): 2 fields, field 2 missing",
            "trace record 3 (\"Hello\"): unknown trace type",
            "trace record 5 (\"Pub\"): field 11: no message type 9",
        ]
    );
    assert_eq!(results[1], Ok(TraceRecord::Pub(pub_record())));
}

#[test]
fn keys_are_each_message_id_and_key_once() {
    let records = every_kind();
    assert_eq!(
        trace_keys(&records[..5]),
        ["7F0000010BB818B4AAC27D5B0E4B0000", "OrderID188", "k2"]
    );
}

#[test]
fn a_splitter_inside_a_value_cannot_break_the_record() {
    let record = TraceRecord::Pub(PubRecord {
        keys: "a\u{1}b\u{2}c".into(),
        ..pub_record()
    });
    let TraceRecord::Pub(p) = &decoded(&encode(&[record]))[0] else {
        panic!()
    };
    assert_eq!(p.keys, "a b c");
}
