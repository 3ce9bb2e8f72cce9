//! The broker's client listener: accepted TCP connections, told apart by protocol.
//!
//! Each connection gets TCP_NODELAY (small replies such as acks and receipts must not wait for
//! Nagle; tonic ignores its own TCP settings for a listener it did not create). A remoting
//! connection goes to [`crate::remoting`]; a gRPC one is wrapped in [`ClientStream`], which
//! repairs the `:authority` of SDKs given several addresses (see [`authority`]).

pub mod authority;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;

use authority::Rewriter;

/// How much is read from the socket at a time while a connection is inspected or transcoded.
const READ_CHUNK_LEN: usize = 16 * 1024;

fn set_nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// The first byte of an HTTP/2 connection (its preface `PRI * HTTP/2.0`). A remoting frame
/// starts with its length, whose high byte is 0 for any frame under 16 MiB.
const HTTP2_FIRST_BYTE: u8 = b'P';
/// How long a new connection may stay silent before it is dropped unclassified.
const FIRST_BYTE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
/// Classified gRPC connections waiting for the server.
const GRPC_BACKLOG: usize = 1024;

/// The accepted connections of `listener`, each with TCP_NODELAY: one that starts with a
/// remoting frame is served by `remoting`; the gRPC ones are yielded wrapped in
/// [`ClientStream`], ready for `tonic::transport::Server::serve_with_incoming`. Each connection is classified in its
/// own task, so a silent one does not hold up the others.
pub fn incoming_with_remoting(
    listener: TcpListener,
    remoting: crate::remoting::Remoting,
) -> impl Stream<Item = io::Result<ClientStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(GRPC_BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return, // the server stopped: release the port
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            set_nodelay(&stream);
            let (grpc, remoting) = (tx.clone(), remoting.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let peeked =
                    tokio::time::timeout(FIRST_BYTE_PATIENCE, stream.peek(&mut first)).await;
                match peeked {
                    Ok(Ok(1)) if first[0] != HTTP2_FIRST_BYTE => remoting.serve(stream, peer).await,
                    Ok(Ok(1)) => {
                        let _ = grpc.send(Ok(ClientStream::new(stream))).await;
                    }
                    _ => {} // closed, failed or silent: drop it
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One client connection whose inbound HTTP/2 header blocks pass through [`Rewriter`] until
/// the connection is known to need no repair; writes go straight to the socket.
#[derive(Debug)]
pub struct ClientStream<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes not yet read by the server.
    ready: BytesMut,
    /// Read buffer while the rewriter looks at the bytes; dropped once it no longer does.
    scratch: Option<Box<[u8]>>,
}

impl<S> ClientStream<S> {
    /// Wraps a freshly accepted connection (nothing read from it yet).
    pub fn new(inner: S) -> Self {
        ClientStream {
            inner,
            rewriter: Rewriter::new(),
            ready: BytesMut::new(),
            scratch: Some(vec![0; READ_CHUNK_LEN].into_boxed_slice()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = buf.remaining().min(this.ready.len());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.rewriter.is_passthrough() {
                this.scratch = None;
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let scratch = this
                .scratch
                .get_or_insert_with(|| vec![0; READ_CHUNK_LEN].into_boxed_slice());
            let mut chunk = ReadBuf::new(scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.rewriter
                .feed(chunk.filled(), &mut this.ready)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for ClientStream<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
