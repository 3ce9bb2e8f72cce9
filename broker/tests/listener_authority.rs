//! A raw HTTP/2 request with the `:authority` grpc-core sends for a multi-address target
//! (`127.0.0.1:30911,127.0.0.1:30921,127.0.0.1:30931`, what the Python SDK sends when given the
//! group's three addresses), against the h2 server tonic runs on.
//!
//! Goal: the broker's listener makes h2 serve it. Method: the same bytes twice over real
//! loopback sockets; once straight into h2 (the negative control: h2 resets the stream with
//! PROTOCOL_ERROR, the bug the SDKs hit), once through `broker::listener::ClientStream`
//! (answered, with the authority repaired to the first address).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use broker::listener::ClientStream;
use bytes::{BufMut as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const SDK_AUTHORITY: &str = "127.0.0.1:30911,127.0.0.1:30921,127.0.0.1:30931";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the client saw for stream 1.
#[derive(Debug, PartialEq)]
enum Answer {
    Status(String),
    Reset(u32),
}

fn frame(out: &mut BytesMut, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
    out.put_slice(payload);
}

/// A QueryRoute-shaped request on stream 1, as grpc-core would send it (ending the stream at
/// once: the server's answer, not the body, is what this is about).
fn request() -> BytesMut {
    let headers: [(&[u8], &[u8]); 6] = [
        (b":scheme", b"http"),
        (b":method", b"POST"),
        (b":authority", SDK_AUTHORITY.as_bytes()),
        (b":path", b"/apache.rocketmq.v2.MessagingService/QueryRoute"),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
    ];
    let block = loona_hpack::Encoder::new().encode(headers);
    let mut out = BytesMut::from(PREFACE);
    frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS
    frame(&mut out, 0x1, 0x1 | 0x4, 1, &block); // HEADERS, END_STREAM | END_HEADERS
    out
}

/// Sends the request and reads frames until stream 1 is answered or reset.
async fn ask(addr: std::net::SocketAddr) -> Answer {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(&request()).await.unwrap();
    let mut decoder = loona_hpack::Decoder::new();
    loop {
        let mut header = [0u8; 9];
        sock.read_exact(&mut header).await.unwrap();
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0; len];
        sock.read_exact(&mut payload).await.unwrap();
        let (kind, flags) = (header[3], header[4]);
        let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        match (kind, stream_id) {
            (0x4, 0) if flags & 0x1 == 0 => {
                let mut ack = BytesMut::new();
                frame(&mut ack, 0x4, 0x1, 0, &[]);
                sock.write_all(&ack).await.unwrap();
            }
            (0x1, 1) => {
                let headers = decoder.decode(&payload).unwrap();
                let status = headers.iter().find(|(n, _)| n == b":status").unwrap();
                return Answer::Status(String::from_utf8(status.1.clone()).unwrap());
            }
            (0x3, 1) => return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap())),
            (0x7, 0) => panic!("GOAWAY: {payload:?}"),
            _ => {}
        }
    }
}

/// Serves one connection with h2 and returns the authority of the first request it accepts.
async fn serve<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> Option<String> {
    let mut conn = h2::server::handshake(io).await.unwrap();
    let (request, mut respond) = conn.accept().await?.ok()?;
    let authority = request.uri().authority().map(ToString::to_string);
    let response = http::Response::builder().status(200).body(()).unwrap();
    respond.send_response(response, true).unwrap();
    // Drive the connection so the response is written.
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.accept()).await;
    authority
}

async fn exchange(through_listener: bool) -> (Answer, Option<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        if through_listener {
            serve(ClientStream::new(sock)).await
        } else {
            serve(sock).await
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), ask(addr))
        .await
        .unwrap();
    let served = tokio::time::timeout(Duration::from_secs(10), server).await;
    (answer, served.ok().and_then(Result::ok).flatten())
}

#[tokio::test]
async fn h2_alone_resets_the_stream_of_a_multi_address_authority() {
    let (answer, _) = exchange(false).await;
    assert_eq!(answer, Answer::Reset(1), "PROTOCOL_ERROR");
}

#[tokio::test]
async fn through_the_listener_h2_serves_it_with_the_first_address_as_authority() {
    let (answer, authority) = exchange(true).await;
    assert_eq!(answer, Answer::Status("200".into()));
    assert_eq!(authority.as_deref(), Some("127.0.0.1:30911"));
}
