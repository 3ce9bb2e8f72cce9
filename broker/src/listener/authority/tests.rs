//! The rewriter against byte streams shaped like grpc-core's: a preface, SETTINGS, header blocks
//! encoded with a dynamic table, DATA. Every randomized case takes a seed (RAFTMQ_TEST_SEED,
//! default 7) and names it when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const SDK_AUTHORITY: &[u8] = b"127.0.0.1:30911,127.0.0.1:30921,127.0.0.1:30931";

type Headers = HeaderList;

fn request(authority: &[u8], path: &str) -> Headers {
    vec![
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":method".to_vec(), b"POST".to_vec()),
        (b":authority".to_vec(), authority.to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b"te".to_vec(), b"trailers".to_vec()),
        (b"content-type".to_vec(), b"application/grpc".to_vec()),
        (b"x-mq-client-id".to_vec(), b"host@1@0@abc".to_vec()),
    ]
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_frame_header(&mut out, payload.len(), kind, flags, stream_id);
    out.extend_from_slice(payload);
    out.to_vec()
}

/// A client: preface, SETTINGS, then per request a HEADERS frame (dynamic table in use, as
/// grpc-core encodes) and a DATA frame.
fn client_bytes(requests: &[(u32, Headers)]) -> Vec<u8> {
    let mut encoder = loona_hpack::Encoder::new();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    for (id, headers) in requests {
        let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        out.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, *id, &block));
        out.extend(frame(0x0, FLAG_END_STREAM, *id, &[0, 0, 0, 0, 2, 8, 1]));
    }
    out
}

#[derive(Debug, PartialEq)]
enum Seen {
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    Other {
        kind: u8,
        stream_id: u32,
        payload: Vec<u8>,
    },
}

/// Parses what h2 would read (after the preface), decoding header blocks as h2 does.
fn server_view(bytes: &[u8]) -> Vec<Seen> {
    assert_eq!(&bytes[..PREFACE.len()], PREFACE);
    let mut rest = &bytes[PREFACE.len()..];
    let mut decoder = loona_hpack::Decoder::new();
    let mut seen = Vec::new();
    let mut block: Option<(u32, u8, Vec<u8>)> = None;
    while !rest.is_empty() {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags, id) = (rest[3], rest[4], stream_id(rest));
        let payload = rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        rest = &rest[FRAME_HEADER_LEN + len..];
        match kind {
            TYPE_HEADERS => {
                let skip = if flags & FLAG_PRIORITY != 0 {
                    PRIORITY_LEN
                } else {
                    0
                };
                assert_eq!(flags & FLAG_PADDED, 0, "the rewriter never pads");
                block = Some((id, flags, payload[skip..].to_vec()));
            }
            TYPE_CONTINUATION => block.as_mut().unwrap().2.extend(payload),
            _ => seen.push(Seen::Other {
                kind,
                stream_id: id,
                payload,
            }),
        }
        if matches!(kind, TYPE_HEADERS | TYPE_CONTINUATION) && flags & FLAG_END_HEADERS != 0 {
            let (stream_id, flags, fragment) = block.take().unwrap();
            let headers = decoder
                .decode(&fragment)
                .expect("h2 decodes what the rewriter wrote");
            let flags = flags & !FLAG_END_HEADERS;
            seen.push(Seen::Headers {
                stream_id,
                flags,
                headers,
            });
        }
    }
    seen
}

fn seed() -> u64 {
    std::env::var("RAFTMQ_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// Feeds `input` in chunks of pseudo-random sizes (1..=max) drawn from `seed`.
fn feed_in_chunks(input: &[u8], seed: u64, max: usize) -> (Vec<u8>, Rewriter) {
    let mut rewriter = Rewriter::new();
    let mut out = BytesMut::new();
    let mut state = seed | 1;
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = usize::try_from(state % max as u64).unwrap() + 1;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rewriter.feed(chunk, &mut out).unwrap();
        rest = tail;
    }
    (out.to_vec(), rewriter)
}

#[test]
fn a_connection_with_a_valid_authority_passes_through_byte_for_byte() {
    let input = client_bytes(&[
        (
            1,
            request(
                b"127.0.0.1:30911",
                "/apache.rocketmq.v2.MessagingService/QueryRoute",
            ),
        ),
        (
            3,
            request(
                b"127.0.0.1:30911",
                "/apache.rocketmq.v2.MessagingService/SendMessage",
            ),
        ),
    ]);
    let (out, rewriter) = feed_in_chunks(&input, seed(), 13);
    assert_eq!(out, input, "seed {}", seed());
    assert!(rewriter.is_passthrough());
    assert_eq!(rewriter.repaired_blocks(), 0);
}

#[test]
fn a_multi_address_authority_becomes_its_first_address_on_every_stream() {
    let paths = ["QueryRoute", "Telemetry", "SendMessage", "ReceiveMessage"];
    let requests: Vec<(u32, Headers)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = u32::try_from(2 * i + 1).unwrap();
            (
                id,
                request(
                    SDK_AUTHORITY,
                    &format!("/apache.rocketmq.v2.MessagingService/{p}"),
                ),
            )
        })
        .collect();
    let input = client_bytes(&requests);
    for max_chunk in [1, 7, 64, 100_000] {
        let (out, rewriter) = feed_in_chunks(&input, seed(), max_chunk);
        let seen = server_view(&out);
        let mut want = Vec::new();
        for (id, headers) in &requests {
            let mut headers = headers.clone();
            headers[2].1 = b"127.0.0.1:30911".to_vec();
            want.push(Seen::Headers {
                stream_id: *id,
                flags: 0,
                headers,
            });
            let payload = vec![0, 0, 0, 0, 2, 8, 1];
            want.push(Seen::Other {
                kind: 0,
                stream_id: *id,
                payload,
            });
        }
        want.insert(
            0,
            Seen::Other {
                kind: 0x4,
                stream_id: 0,
                payload: vec![],
            },
        );
        assert_eq!(seen, want, "seed {} max chunk {max_chunk}", seed());
        assert_eq!(rewriter.repaired_blocks(), 4);
        assert!(
            !rewriter.is_passthrough(),
            "a repaired connection stays transcoded"
        );
    }
}

#[test]
fn padding_priority_and_continuation_frames_are_understood_and_end_stream_is_kept() {
    let mut encoder = loona_hpack::Encoder::new();
    let mut headers = request(
        SDK_AUTHORITY,
        "/apache.rocketmq.v2.MessagingService/Heartbeat",
    );
    // Larger than one frame once re-encoded: the output needs CONTINUATION frames.
    headers.push((b"x-big".to_vec(), vec![b'a'; 20_000]));
    let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    let (first, second) = block.split_at(100);
    let mut payload = vec![3]; // pad length
    payload.extend([0x80, 0, 0, 0, 16]); // exclusive dependency on stream 0, weight 16
    payload.extend(first);
    payload.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM;
    input.extend(frame(TYPE_HEADERS, flags, 1, &payload));
    for chunk in second.chunks(MAX_FRAME_LEN) {
        let last = chunk.as_ptr_range().end == second.as_ptr_range().end;
        let flags = if last { FLAG_END_HEADERS } else { 0 };
        input.extend(frame(TYPE_CONTINUATION, flags, 1, chunk));
    }
    let (out, _) = feed_in_chunks(&input, seed(), 4096);
    let seen = server_view(&out);
    headers[2].1 = b"127.0.0.1:30911".to_vec();
    let want = vec![Seen::Headers {
        stream_id: 1,
        flags: FLAG_PRIORITY | FLAG_END_STREAM,
        headers,
    }];
    assert_eq!(seen, want, "seed {}", seed());
}

#[test]
fn an_authority_with_no_valid_address_is_dropped() {
    let input = client_bytes(&[(1, request(b"a b,c d", "/x/Y"))]);
    let (out, _) = feed_in_chunks(&input, seed(), 32);
    let Seen::Headers { headers, .. } = &server_view(&out)[1] else {
        panic!("want the header block second");
    };
    assert!(
        headers.iter().all(|(n, _)| n != b":authority"),
        "{headers:?}"
    );
    assert_eq!(headers.len(), 6);
}

#[test]
fn bytes_that_are_not_an_http2_preface_pass_through() {
    let input = b"GET / HTTP/1.1\r\nHost: 127.0.0.1,127.0.0.2\r\n\r\n".to_vec();
    let (out, rewriter) = feed_in_chunks(&input, seed(), 5);
    assert_eq!(out, input);
    assert!(rewriter.is_passthrough());
}

#[test]
fn a_header_block_interrupted_by_another_frame_is_an_error_naming_the_stream() {
    let mut encoder = loona_hpack::Encoder::new();
    let headers = request(SDK_AUTHORITY, "/x/Y");
    let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 5, &block));
    input.extend(frame(0x0, 0, 5, b"data"));
    let mut out = BytesMut::new();
    let err = Rewriter::new().feed(&input, &mut out).unwrap_err();
    assert!(
        matches!(err, RewriteError::Frame { stream_id: 5, .. }),
        "{err}"
    );
}

#[test]
fn a_header_block_that_does_not_decode_is_an_hpack_error() {
    let mut input = PREFACE.to_vec();
    // Indexed field 70: beyond the static table, and the dynamic table is empty.
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x80 | 70]));
    let err = Rewriter::new()
        .feed(&input, &mut BytesMut::new())
        .unwrap_err();
    assert!(
        matches!(err, RewriteError::Hpack { stream_id: 1, .. }),
        "{err}"
    );
}
