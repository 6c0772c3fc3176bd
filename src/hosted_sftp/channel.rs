//! One SFTP channel: an async reader that cuts the channel's byte stream into request frames,
//! a thread that answers them in order ([`SftpSession`], blocking file I/O), and an async
//! writer that sends the answers as the client's window allows. What waits for the thread is
//! bounded per session ([`SessionLimits`]); a client past a limit is disconnected.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, Disconnect};
use tokio::sync::mpsc;

use super::session::Shared;
use super::sftp::{MAX_FRAME, Outcome, SessionContext, SftpSession};

/// Answers queued between a session thread and the channel writer (each at most 256 KiB).
const ANSWER_QUEUE: usize = 8;
/// What a queued request costs beyond its bytes (its allocation and queue slot), so that a
/// flood of tiny requests is bounded by memory, not by count alone.
const REQUEST_OVERHEAD: usize = 64;

/// Runs the SFTP protocol on `channel`: the frame reader, the session thread and the answer
/// writer. `queued` counts the bytes of requests waiting across the session's channels;
/// `handle` disconnects the session when a limit is exceeded. Returns false when the thread
/// could not be started.
pub(super) fn run_sftp_channel(
    shared: &Arc<Shared>,
    channel: Channel<Msg>,
    ctx: SessionContext,
    queued: Arc<AtomicUsize>,
    handle: russh::server::Handle,
) -> bool {
    let (mut read_half, write_half) = channel.split();
    let (request_tx, mut request_rx) = mpsc::unbounded_channel::<Bytes>();
    let (answer_tx, mut answer_rx) = mpsc::channel::<Bytes>(ANSWER_QUEUE);
    let waiting = Arc::new(AtomicUsize::new(0));
    let (user, peer) = (ctx.user.clone(), ctx.peer);
    let limits = shared.limits.clone();

    let threads = shared.threads.clone();
    let (thread_queued, thread_waiting) = (queued.clone(), waiting.clone());
    threads.fetch_add(1, Ordering::AcqRel);
    let thread_user = user.clone();
    let spawned = std::thread::Builder::new()
        .name("ferry-sftp".into())
        .spawn(move || {
            let mut session = SftpSession::new(ctx);
            while let Some(frame) = request_rx.blocking_recv() {
                thread_queued.fetch_sub(frame.len() + REQUEST_OVERHEAD, Ordering::AcqRel);
                thread_waiting.fetch_sub(1, Ordering::AcqRel);
                match session.handle(frame) {
                    Outcome::Reply(answer) => {
                        if answer_tx.blocking_send(answer).is_err() {
                            break;
                        }
                    }
                    Outcome::Close(answer) => {
                        let _ = answer_tx.blocking_send(answer);
                        break;
                    }
                }
            }
            // Whatever was still queued no longer counts against the session.
            while let Ok(frame) = request_rx.try_recv() {
                thread_queued.fetch_sub(frame.len() + REQUEST_OVERHEAD, Ordering::AcqRel);
            }
            let totals = session.totals();
            drop(session);
            tracing::debug!(
                user = %thread_user,
                address = %peer,
                read = totals.read,
                written = totals.written,
                "hosted SFTP: SFTP session ended"
            );
            threads.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        shared.threads.fetch_sub(1, Ordering::AcqRel);
        tracing::error!(error = %e, "hosted SFTP: cannot start a session thread");
        return false;
    }

    shared.runtime.spawn(async move {
        let mut frames = Frames::default();
        let mut exceeded = None;
        'channel: while let Some(msg) = read_half.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let mut data: &[u8] = &data;
                    while !data.is_empty() {
                        let frame = match frames.push(&mut data) {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break,
                            Err(len) => {
                                tracing::warn!(
                                    user = %user,
                                    address = %peer,
                                    len,
                                    "hosted SFTP: invalid request length; closing the channel"
                                );
                                break 'channel;
                            }
                        };
                        let cost = frame.len() + REQUEST_OVERHEAD;
                        let in_queue = waiting.fetch_add(1, Ordering::AcqRel) + 1;
                        let bytes = queued.fetch_add(cost, Ordering::AcqRel) + cost;
                        if request_tx.send(frame).is_err() {
                            // The thread ended: its leftovers were counted down there.
                            queued.fetch_sub(cost, Ordering::AcqRel);
                            break 'channel;
                        }
                        if in_queue > limits.max_requests {
                            exceeded = Some((
                                "requests",
                                format!(
                                    "more than {} requests waiting on one channel",
                                    limits.max_requests
                                ),
                            ));
                            break 'channel;
                        }
                        if bytes > limits.max_buffer {
                            exceeded = Some((
                                "buffer",
                                format!(
                                    "more than {} MiB of requests waiting",
                                    limits.max_buffer / (1024 * 1024)
                                ),
                            ));
                            break 'channel;
                        }
                    }
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        drop(request_tx);
        if let Some((label, what)) = exceeded {
            tracing::warn!(
                user = %user,
                address = %peer,
                "hosted SFTP: disconnecting: the client sent {what} without reading the answers"
            );
            crate::observe::sftp_session_limit_exceeded(label);
            let _ = handle
                .disconnect(
                    Disconnect::ByApplication,
                    format!("{what}; read the answers before sending more"),
                    String::new(),
                )
                .await;
        }
    });

    shared.runtime.spawn(async move {
        while let Some(answer) = answer_rx.recv().await {
            if write_half.data_bytes(answer).await.is_err() {
                break;
            }
        }
        let _ = write_half.eof().await;
        let _ = write_half.close().await;
    });
    true
}

/// Cuts a channel's byte stream into SFTP request frames (without their length). Each frame
/// gets an allocation of exactly its size, filled as its bytes arrive: no frame keeps a larger
/// buffer alive, so what a queue of frames holds is what it counts.
#[derive(Default)]
struct Frames {
    length: [u8; 4],
    have_length: usize,
    body: Option<BytesMut>,
    want: usize,
}

impl Frames {
    /// Takes bytes from `data` (advancing it) until a frame is complete (returned) or `data`
    /// is used up (`None`). `Err(length)` for a length of 0 or above [`MAX_FRAME`].
    fn push(&mut self, data: &mut &[u8]) -> std::result::Result<Option<Bytes>, usize> {
        if self.body.is_none() {
            let take = (4 - self.have_length).min(data.len());
            self.length[self.have_length..self.have_length + take].copy_from_slice(&data[..take]);
            self.have_length += take;
            *data = &data[take..];
            if self.have_length < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.length) as usize;
            self.have_length = 0;
            if len == 0 || len > MAX_FRAME {
                return Err(len);
            }
            self.want = len;
            self.body = Some(BytesMut::with_capacity(len));
        }
        let body = self.body.as_mut().expect("a frame is being filled");
        let take = (self.want - body.len()).min(data.len());
        body.extend_from_slice(&data[..take]);
        *data = &data[take..];
        if body.len() < self.want {
            return Ok(None);
        }
        Ok(self.body.take().map(BytesMut::freeze))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whatever_the_packet_boundaries() {
        let mut stream = Vec::new();
        for body in [&b"abc"[..], &[7u8; 70_000][..], b"z"] {
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        for chunk in [1, 3, 5, 32_768, stream.len()] {
            let mut frames = Frames::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut piece = piece;
                while !piece.is_empty() {
                    if let Some(f) = frames.push(&mut piece).expect("valid") {
                        out.push(f);
                    }
                }
            }
            assert_eq!(out.len(), 3, "chunk {chunk}");
            assert_eq!(&out[0][..], b"abc");
            assert_eq!(out[1].len(), 70_000);
            assert_eq!(&out[2][..], b"z");
        }
    }

    #[test]
    fn a_zero_or_huge_length_is_refused() {
        let mut frames = Frames::default();
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert_eq!(frames.push(&mut zero), Err(0));
        let mut frames = Frames::default();
        let mut huge: &[u8] = &[0x7f, 0, 0, 0];
        assert!(frames.push(&mut huge).is_err());
    }
}
