//! Pins the RocketMQ 5 gRPC wire contract (`apache.rocketmq.v2`) that the
//! official SDKs (Rust `rocketmq` 5.0.0, Python 5.1.2, Node 1.0.8) rely on:
//! method paths, field numbers/types (via hand-computed protobuf bytes) and
//! enum values. Everything runs in memory: no sockets, no async runtime.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use proto::apache::rocketmq::v2 as pb;
use proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use proto::apache::rocketmq::v2::messaging_service_server::{
    self, MessagingService, MessagingServiceServer,
};
use tonic::codegen::{Service, http, tokio_stream};
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// Drives a future that never waits on I/O or timers to completion.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not complete in memory");
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Encodes `msg`, compares with `expected`, and checks it decodes back equal.
fn assert_wire<M: prost::Message + Default + PartialEq + std::fmt::Debug>(
    msg: &M,
    expected: &[u8],
) {
    let got = msg.encode_to_vec();
    assert_eq!(hex(&got), hex(expected), "encoding of {msg:?}");
    assert_eq!(&M::decode(expected).expect("decodes"), msg);
}

fn resource(name: &str) -> pb::Resource {
    pb::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

fn ok_status(message: &str) -> pb::Status {
    pb::Status {
        code: pb::Code::Ok as i32,
        message: message.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// (a) service name and method paths
// ---------------------------------------------------------------------------

const SERVICE: &str = "apache.rocketmq.v2.MessagingService";

/// Every RPC of MessagingService; the comment says which SDKs call it.
const METHODS: &[&str] = &[
    "QueryRoute",                      // R P N
    "Heartbeat",                       // R P N
    "SendMessage",                     // R P N
    "QueryAssignment",                 // push consumers (P N)
    "ReceiveMessage",                  // R P N (server streaming)
    "AckMessage",                      // R P N
    "ForwardMessageToDeadLetterQueue", // push consumers (P N)
    "PullMessage",                     // pull consumers (server streaming)
    "UpdateOffset",                    // pull consumers
    "GetOffset",                       // pull consumers
    "QueryOffset",                     // pull consumers
    "EndTransaction",                  // transactional producers (R P N)
    "Telemetry",                       // R P N (bidi streaming)
    "NotifyClientTermination",         // R P N
    "ChangeInvisibleDuration",         // P N
    "RecallMessage",                   // P N (delay recall)
    "SyncLiteSubscription",            // lite push consumers
];

#[test]
fn service_name_is_upstreams() {
    assert_eq!(messaging_service_server::SERVICE_NAME, SERVICE);
    assert_eq!(
        <MessagingServiceServer<Named> as tonic::server::NamedService>::NAME,
        SERVICE
    );
}

/// Test double: every handler fails with DATA_LOSS and its own name, so a
/// response tells exactly which handler a path was routed to.
struct Named;

fn named<T>(method: &str) -> Result<T, Status> {
    Err(Status::data_loss(method))
}

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl MessagingService for Named {
    async fn query_route(
        &self,
        _: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, Status> {
        named("QueryRoute")
    }
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        named("Heartbeat")
    }
    async fn send_message(
        &self,
        _: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        named("SendMessage")
    }
    async fn query_assignment(
        &self,
        _: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, Status> {
        named("QueryAssignment")
    }
    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;
    async fn receive_message(
        &self,
        _: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        named("ReceiveMessage")
    }
    async fn ack_message(
        &self,
        _: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, Status> {
        named("AckMessage")
    }
    async fn forward_message_to_dead_letter_queue(
        &self,
        _: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, Status> {
        named("ForwardMessageToDeadLetterQueue")
    }
    type PullMessageStream = BoxStream<pb::PullMessageResponse>;
    async fn pull_message(
        &self,
        _: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        named("PullMessage")
    }
    async fn update_offset(
        &self,
        _: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, Status> {
        named("UpdateOffset")
    }
    async fn get_offset(
        &self,
        _: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, Status> {
        named("GetOffset")
    }
    async fn query_offset(
        &self,
        _: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, Status> {
        named("QueryOffset")
    }
    async fn end_transaction(
        &self,
        _: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        named("EndTransaction")
    }
    type TelemetryStream = BoxStream<pb::TelemetryCommand>;
    async fn telemetry(
        &self,
        _: Request<tonic::Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        named("Telemetry")
    }
    async fn notify_client_termination(
        &self,
        _: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, Status> {
        named("NotifyClientTermination")
    }
    async fn change_invisible_duration(
        &self,
        _: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        named("ChangeInvisibleDuration")
    }
    async fn recall_message(
        &self,
        _: Request<pb::RecallMessageRequest>,
    ) -> Result<Response<pb::RecallMessageResponse>, Status> {
        named("RecallMessage")
    }
    async fn sync_lite_subscription(
        &self,
        _: Request<pb::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<pb::SyncLiteSubscriptionResponse>, Status> {
        named("SyncLiteSubscription")
    }
}

/// Sends one raw gRPC request (a single empty message frame) to the generated
/// server and returns (grpc-status, grpc-message) from the response headers.
fn call_raw(path: &str) -> (String, String) {
    let mut server = MessagingServiceServer::new(Named);
    // gRPC frame: uncompressed flag 0, length 0 => the default message.
    let frame = String::from("\0\0\0\0\0");
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(frame))
        .expect("request");
    let resp = block_on(server.call(req)).expect("infallible");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

#[test]
fn server_routes_every_sdk_path_to_its_handler() {
    for method in METHODS {
        let path = format!("/{SERVICE}/{method}");
        let (code, message) = call_raw(&path);
        assert_eq!(code, (tonic::Code::DataLoss as i32).to_string(), "{path}");
        assert_eq!(message, *method, "{path} reached the wrong handler");
    }
    // Sanity: an unknown path is UNIMPLEMENTED, so the check above can fail.
    let (code, _) = call_raw(&format!("/{SERVICE}/NoSuchMethod"));
    assert_eq!(code, (tonic::Code::Unimplemented as i32).to_string());
    let (code, _) = call_raw("/apache.rocketmq.v1.MessagingService/QueryRoute");
    assert_eq!(code, (tonic::Code::Unimplemented as i32).to_string());
}

#[test]
fn client_methods_reach_the_same_named_handlers() {
    let mut client = MessagingServiceClient::new(MessagingServiceServer::new(Named));
    let mut seen = Vec::new();
    let mut record = |r: Result<(), Status>| {
        let status = r.expect_err("test server always fails");
        assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
        seen.push(status.message().to_owned());
    };
    block_on(async {
        record(
            client
                .query_route(pb::QueryRouteRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .heartbeat(pb::HeartbeatRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .send_message(pb::SendMessageRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .query_assignment(pb::QueryAssignmentRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .receive_message(pb::ReceiveMessageRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .ack_message(pb::AckMessageRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .forward_message_to_dead_letter_queue(
                    pb::ForwardMessageToDeadLetterQueueRequest::default(),
                )
                .await
                .map(drop),
        );
        record(
            client
                .pull_message(pb::PullMessageRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .update_offset(pb::UpdateOffsetRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .get_offset(pb::GetOffsetRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .query_offset(pb::QueryOffsetRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .end_transaction(pb::EndTransactionRequest::default())
                .await
                .map(drop),
        );
        let outbound = tokio_stream::iter(vec![pb::TelemetryCommand::default()]);
        record(client.telemetry(outbound).await.map(drop));
        record(
            client
                .notify_client_termination(pb::NotifyClientTerminationRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .change_invisible_duration(pb::ChangeInvisibleDurationRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .recall_message(pb::RecallMessageRequest::default())
                .await
                .map(drop),
        );
        record(
            client
                .sync_lite_subscription(pb::SyncLiteSubscriptionRequest::default())
                .await
                .map(drop),
        );
    });
    assert_eq!(seen, METHODS);
}

// ---------------------------------------------------------------------------
// (b) field numbers and types, pinned as bytes
// ---------------------------------------------------------------------------

#[test]
fn send_message_request_minimal() {
    // SendMessageRequest.messages=1 { Message.topic=1 { Resource.name=2 "t" }, Message.body=4 "x" }
    let req = pb::SendMessageRequest {
        messages: vec![pb::Message {
            topic: Some(resource("t")),
            body: Bytes::from_static(b"x"),
            ..Default::default()
        }],
    };
    assert_wire(
        &req,
        &[0x0a, 0x08, 0x0a, 0x03, 0x12, 0x01, b't', 0x22, 0x01, b'x'],
    );
}

#[test]
fn send_message_request_with_properties() {
    let msg = pb::Message {
        topic: Some(resource("t")),
        user_properties: [("k".to_owned(), "v".to_owned())].into(),
        system_properties: Some(pb::SystemProperties {
            message_id: "m".to_owned(),
            body_encoding: pb::Encoding::Identity as i32,
            message_type: pb::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: Bytes::from_static(b"x"),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x19,                                     // messages (1), 25 bytes
        0x0a, 0x03, 0x12, 0x01, b't',                   //   topic (1) { name (2) }
        0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', //   user_properties (2) map entry
        0x1a, 0x07,                                     //   system_properties (3)
        0x1a, 0x01, b'm',                               //     message_id (3)
        0x28, 0x01,                                     //     body_encoding (5) IDENTITY
        0x30, 0x01,                                     //     message_type (6) NORMAL
        0x22, 0x01, b'x',                               //   body (4)
    ];
    assert_wire(
        &pb::SendMessageRequest {
            messages: vec![msg],
        },
        &expected,
    );
}

#[test]
fn delivered_system_properties_high_field_numbers_and_presence() {
    let props = pb::SystemProperties {
        body_encoding: pb::Encoding::Identity as i32,
        receipt_handle: Some("r".to_owned()),
        queue_offset: Some(0), // proto3 `optional`: zero is still sent
        delivery_attempt: Some(1),
        message_group: Some("g".to_owned()),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x28, 0x01,             // body_encoding (5)
        0x62, 0x01, b'r',       // receipt_handle (12)
        0x70, 0x00,             // queue_offset (14) = 0, present
        0x80, 0x01, 0x01,       // delivery_attempt (16) = 1 (two-byte tag)
        0x8a, 0x01, 0x01, b'g', // message_group (17)
    ];
    assert_wire(&props, &expected);
}

#[test]
fn status_ok() {
    // code (1) varint 20000 = a0 9c 01; message (2) "ok"
    assert_wire(
        &ok_status("ok"),
        &[0x08, 0xa0, 0x9c, 0x01, 0x12, 0x02, b'o', b'k'],
    );
}

#[test]
fn query_route_request_with_endpoints() {
    let req = pb::QueryRouteRequest {
        topic: Some(resource("t")),
        endpoints: Some(pb::Endpoints {
            scheme: pb::AddressScheme::IPv4 as i32,
            addresses: vec![pb::Address {
                host: "127.0.0.1".to_owned(),
                port: 8081,
            }],
        }),
    };
    let mut expected = vec![
        0x0a, 0x03, 0x12, 0x01, b't', // topic (1)
        0x12, 0x12, // endpoints (2), 18 bytes
        0x08, 0x01, //   scheme (1) IPv4
        0x12, 0x0e, //   addresses (2), 14 bytes
        0x0a, 0x09, //     host (1)
    ];
    expected.extend_from_slice(b"127.0.0.1");
    expected.extend_from_slice(&[0x10, 0x91, 0x3f]); // port (2) = 8081
    assert_wire(&req, &expected);
}

#[test]
fn query_route_response_queue() {
    let resp = pb::QueryRouteResponse {
        status: Some(pb::Status {
            code: pb::Code::Ok as i32,
            message: String::new(),
        }),
        message_queues: vec![pb::MessageQueue {
            topic: None,
            id: 1,
            permission: pb::Permission::ReadWrite as i32,
            broker: Some(pb::Broker {
                name: "b".to_owned(),
                id: 0,
                endpoints: None,
            }),
            accept_message_types: vec![
                pb::MessageType::Normal as i32,
                pb::MessageType::Fifo as i32,
            ],
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x04, 0x08, 0xa0, 0x9c, 0x01, // status (1) { code OK }
        0x12, 0x0d,                         // message_queues (2), 13 bytes
        0x10, 0x01,                         //   id (2)
        0x18, 0x04,                         //   permission (3) READ_WRITE
        0x22, 0x03, 0x0a, 0x01, b'b',       //   broker (4) { name (1) }
        0x2a, 0x02, 0x01, 0x02,             //   accept_message_types (5), packed
    ];
    assert_wire(&resp, &expected);
}

#[test]
fn telemetry_settings_reply() {
    // What the server echoes: status OK + settings{client_type PRODUCER, publishing{max_body_size 4 MiB}}.
    let cmd = pb::TelemetryCommand {
        status: Some(ok_status("")),
        command: Some(pb::telemetry_command::Command::Settings(pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: vec![],
                max_body_size: 4 * 1024 * 1024,
                validate_message_type: false,
            })),
            ..Default::default()
        })),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x04, 0x08, 0xa0, 0x9c, 0x01,  // status (1)
        0x12, 0x09,                          // settings (2)
        0x08, 0x01,                          //   client_type (1) PRODUCER
        0x2a, 0x05,                          //   publishing (5)
        0x10, 0x80, 0x80, 0x80, 0x02,        //     max_body_size (2) = 4194304
    ];
    assert_wire(&cmd, &expected);

    let subscription = pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(pb::Settings {
            pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
                group: Some(resource("g")),
                fifo: Some(false),
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    #[rustfmt::skip]
    let expected = [
        0x12, 0x09,                          // settings (2)
        0x32, 0x07,                          //   subscription (6)
        0x0a, 0x03, 0x12, 0x01, b'g',        //     group (1)
        0x18, 0x00,                          //     fifo (3) = false, present
    ];
    assert_wire(&subscription, &expected);
}

#[test]
fn telemetry_server_commands() {
    let cmd = pb::TelemetryCommand {
        status: None,
        command: Some(
            pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                pb::RecoverOrphanedTransactionCommand {
                    message: None,
                    transaction_id: "x".to_owned(),
                },
            ),
        ),
    };
    // recover_orphaned_transaction_command (5) { transaction_id (2) }
    assert_wire(&cmd, &[0x2a, 0x03, 0x12, 0x01, b'x']);

    let cmd = pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::ReconnectEndpointsCommand(
            pb::ReconnectEndpointsCommand {
                nonce: "n".to_owned(),
            },
        )),
    };
    // reconnect_endpoints_command (8) { nonce (1) }
    assert_wire(&cmd, &[0x42, 0x03, 0x0a, 0x01, b'n']);
}

#[test]
fn receive_message_response_frames() {
    use pb::receive_message_response::Content;
    let not_found = pb::ReceiveMessageResponse {
        content: Some(Content::Status(pb::Status {
            code: pb::Code::MessageNotFound as i32,
            message: String::new(),
        })),
    };
    // status (1) { code 40401 = d1 bb 02 }
    assert_wire(&not_found, &[0x0a, 0x04, 0x08, 0xd1, 0xbb, 0x02]);

    let delivered_at = pb::ReceiveMessageResponse {
        content: Some(Content::DeliveryTimestamp(prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        })),
    };
    // delivery_timestamp (3) { seconds (1), nanos (2) }
    assert_wire(&delivered_at, &[0x1a, 0x04, 0x08, 0x01, 0x10, 0x02]);

    let message = pb::ReceiveMessageResponse {
        content: Some(Content::Message(pb::Message {
            body: Bytes::from_static(b"x"),
            ..Default::default()
        })),
    };
    // message (2) { body (4) }
    assert_wire(&message, &[0x12, 0x03, 0x22, 0x01, b'x']);
}

#[test]
fn receive_and_ack_requests() {
    let req = pb::ReceiveMessageRequest {
        group: Some(resource("g")),
        batch_size: 32,
        invisible_duration: Some(prost_types::Duration {
            seconds: 15,
            nanos: 0,
        }),
        auto_renew: true,
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 20,
            nanos: 0,
        }),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x03, 0x12, 0x01, b'g', // group (1)
        0x20, 0x20,                   // batch_size (4) = 32
        0x2a, 0x02, 0x08, 0x0f,       // invisible_duration (5) = 15 s
        0x30, 0x01,                   // auto_renew (6)
        0x3a, 0x02, 0x08, 0x14,       // long_polling_timeout (7) = 20 s
    ];
    assert_wire(&req, &expected);

    let ack = pb::AckMessageRequest {
        group: Some(resource("g")),
        topic: Some(resource("t")),
        entries: vec![pb::AckMessageEntry {
            message_id: "m".to_owned(),
            receipt_handle: "r".to_owned(),
            lite_topic: None,
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x03, 0x12, 0x01, b'g',             // group (1)
        0x12, 0x03, 0x12, 0x01, b't',             // topic (2)
        0x1a, 0x06, 0x0a, 0x01, b'm', 0x12, 0x01, b'r', // entries (3)
    ];
    assert_wire(&ack, &expected);
}

#[test]
fn change_invisible_and_end_transaction() {
    let resp = pb::ChangeInvisibleDurationResponse {
        status: None,
        receipt_handle: "h".to_owned(),
    };
    assert_wire(&resp, &[0x12, 0x01, b'h']); // receipt_handle (2)

    let req = pb::EndTransactionRequest {
        message_id: "m".to_owned(),
        transaction_id: "x".to_owned(),
        resolution: pb::TransactionResolution::Commit as i32,
        source: pb::TransactionSource::SourceServerCheck as i32,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x12, 0x01, b'm', // message_id (2)
        0x1a, 0x01, b'x', // transaction_id (3)
        0x20, 0x01,       // resolution (4) COMMIT
        0x28, 0x02,       // source (5) SOURCE_SERVER_CHECK
    ];
    assert_wire(&req, &expected);
}

// ---------------------------------------------------------------------------
// enum values (names as in the .proto, numbers as on the wire)
// ---------------------------------------------------------------------------

fn check_enum(table: &[(&str, i32)], lookup: impl Fn(&str) -> Option<i32>) {
    for (name, number) in table {
        assert_eq!(lookup(name), Some(*number), "{name}");
    }
}

#[test]
fn status_codes() {
    #[rustfmt::skip]
    let codes = [
        ("CODE_UNSPECIFIED", 0), ("OK", 20000), ("MULTIPLE_RESULTS", 30000),
        ("BAD_REQUEST", 40000), ("ILLEGAL_ACCESS_POINT", 40001), ("ILLEGAL_TOPIC", 40002),
        ("ILLEGAL_CONSUMER_GROUP", 40003), ("ILLEGAL_MESSAGE_TAG", 40004),
        ("ILLEGAL_MESSAGE_KEY", 40005), ("ILLEGAL_MESSAGE_GROUP", 40006),
        ("ILLEGAL_MESSAGE_PROPERTY_KEY", 40007), ("INVALID_TRANSACTION_ID", 40008),
        ("ILLEGAL_MESSAGE_ID", 40009), ("ILLEGAL_FILTER_EXPRESSION", 40010),
        ("ILLEGAL_INVISIBLE_TIME", 40011), ("ILLEGAL_DELIVERY_TIME", 40012),
        ("INVALID_RECEIPT_HANDLE", 40013), ("MESSAGE_PROPERTY_CONFLICT_WITH_TYPE", 40014),
        ("UNRECOGNIZED_CLIENT_TYPE", 40015), ("MESSAGE_CORRUPTED", 40016),
        ("CLIENT_ID_REQUIRED", 40017), ("ILLEGAL_POLLING_TIME", 40018),
        ("ILLEGAL_OFFSET", 40019), ("ILLEGAL_LITE_TOPIC", 40020),
        ("INVALID_CLIENT_PROPERTIES", 40021),
        ("UNAUTHORIZED", 40100), ("PAYMENT_REQUIRED", 40200), ("FORBIDDEN", 40300),
        ("NOT_FOUND", 40400), ("MESSAGE_NOT_FOUND", 40401), ("TOPIC_NOT_FOUND", 40402),
        ("CONSUMER_GROUP_NOT_FOUND", 40403), ("OFFSET_NOT_FOUND", 40404),
        ("REQUEST_TIMEOUT", 40800),
        ("PAYLOAD_TOO_LARGE", 41300), ("MESSAGE_BODY_TOO_LARGE", 41301), ("MESSAGE_BODY_EMPTY", 41302),
        ("PRECONDITION_FAILED", 42800),
        ("TOO_MANY_REQUESTS", 42900), ("LITE_TOPIC_QUOTA_EXCEEDED", 42901),
        ("LITE_SUBSCRIPTION_QUOTA_EXCEEDED", 42902),
        ("REQUEST_HEADER_FIELDS_TOO_LARGE", 43100), ("MESSAGE_PROPERTIES_TOO_LARGE", 43101),
        ("INTERNAL_ERROR", 50000), ("INTERNAL_SERVER_ERROR", 50001), ("HA_NOT_AVAILABLE", 50002),
        ("NOT_IMPLEMENTED", 50100),
        ("PROXY_TIMEOUT", 50400), ("MASTER_PERSISTENCE_TIMEOUT", 50401),
        ("SLAVE_PERSISTENCE_TIMEOUT", 50402),
        ("UNSUPPORTED", 50500), ("VERSION_UNSUPPORTED", 50501),
        ("VERIFY_FIFO_MESSAGE_UNSUPPORTED", 50502),
        ("FAILED_TO_CONSUME_MESSAGE", 60000),
    ];
    check_enum(&codes, |n| pb::Code::from_str_name(n).map(|c| c as i32));
    // No value beyond the table: the enum has exactly these numbers.
    let defined = (0..=70_000)
        .filter(|n| pb::Code::try_from(*n).is_ok())
        .count();
    assert_eq!(defined, codes.len());
}

#[test]
fn other_enums() {
    check_enum(
        &[
            ("MESSAGE_TYPE_UNSPECIFIED", 0),
            ("NORMAL", 1),
            ("FIFO", 2),
            ("DELAY", 3),
            ("TRANSACTION", 4),
            ("LITE", 5),
            ("PRIORITY", 6),
        ],
        |n| pb::MessageType::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("CLIENT_TYPE_UNSPECIFIED", 0),
            ("PRODUCER", 1),
            ("PUSH_CONSUMER", 2),
            ("SIMPLE_CONSUMER", 3),
            ("PULL_CONSUMER", 4),
            ("LITE_PUSH_CONSUMER", 5),
            ("LITE_SIMPLE_CONSUMER", 6),
        ],
        |n| pb::ClientType::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("PERMISSION_UNSPECIFIED", 0),
            ("NONE", 1),
            ("READ", 2),
            ("WRITE", 3),
            ("READ_WRITE", 4),
        ],
        |n| pb::Permission::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[("ENCODING_UNSPECIFIED", 0), ("IDENTITY", 1), ("GZIP", 2)],
        |n| pb::Encoding::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("DIGEST_TYPE_UNSPECIFIED", 0),
            ("CRC32", 1),
            ("MD5", 2),
            ("SHA1", 3),
        ],
        |n| pb::DigestType::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[("FILTER_TYPE_UNSPECIFIED", 0), ("TAG", 1), ("SQL", 2)],
        |n| pb::FilterType::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("ADDRESS_SCHEME_UNSPECIFIED", 0),
            ("IPv4", 1),
            ("IPv6", 2),
            ("DOMAIN_NAME", 3),
        ],
        |n| pb::AddressScheme::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("TRANSACTION_RESOLUTION_UNSPECIFIED", 0),
            ("COMMIT", 1),
            ("ROLLBACK", 2),
        ],
        |n| pb::TransactionResolution::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("SOURCE_UNSPECIFIED", 0),
            ("SOURCE_CLIENT", 1),
            ("SOURCE_SERVER_CHECK", 2),
        ],
        |n| pb::TransactionSource::from_str_name(n).map(|v| v as i32),
    );
    check_enum(
        &[
            ("LANGUAGE_UNSPECIFIED", 0),
            ("JAVA", 1),
            ("CPP", 2),
            ("DOT_NET", 3),
            ("GOLANG", 4),
            ("RUST", 5),
            ("PYTHON", 6),
            ("PHP", 7),
            ("NODE_JS", 8),
            ("RUBY", 9),
            ("OBJECTIVE_C", 10),
            ("DART", 11),
            ("KOTLIN", 12),
        ],
        |n| pb::Language::from_str_name(n).map(|v| v as i32),
    );
    check_enum(&[("BEGINNING", 0), ("END", 1), ("TIMESTAMP", 2)], |n| {
        pb::QueryOffsetPolicy::from_str_name(n).map(|v| v as i32)
    });
    check_enum(
        &[
            ("PARTIAL_ADD", 0),
            ("PARTIAL_REMOVE", 1),
            ("COMPLETE_ADD", 2),
            ("COMPLETE_REMOVE", 3),
        ],
        |n| pb::LiteSubscriptionAction::from_str_name(n).map(|v| v as i32),
    );
    check_enum(&[("LAST", 0), ("MIN", 1), ("MAX", 2)], |n| {
        pb::offset_option::Policy::from_str_name(n).map(|v| v as i32)
    });
}
