//! The relay's splice(2) path: the kernel pipe a bulk transfer moves
//! through socket to socket, and, when a tunnel follows frames, how whole
//! frames are gathered in it (their heads peeked at in the socket).

use std::io;
use std::task::{Context, Poll, ready};

use tokio::io::{Interest, ReadBuf};
use tokio::time::Instant;

use super::super::Transport;
use super::super::frames::{Peeked, Tracker};
use super::{HEADER_READ, Half, SPLICE_MIN_PAYLOAD, Side};

/// A kernel pipe that carries a bulk transfer socket to socket with
/// splice(2): page references move, the bytes are never copied through
/// user space. Created when a read fills the whole scratch buffer, dropped
/// as soon as the direction goes idle (so idle tunnels hold no pipe).
#[derive(Debug)]
pub(super) struct Pipe {
    pub(super) read: std::os::fd::OwnedFd,
    pub(super) write: std::os::fd::OwnedFd,
    pub(super) capacity: usize,
    pub(super) buffered: usize,
    /// When the destination last took bytes from (or the source last put
    /// bytes into) the pipe: with bytes buffered, the start of a blocked
    /// write (`*send_timeout`).
    pub(super) since: Instant,
}

/// Pipe size asked for (the kernel may grant less).
const PIPE_SIZE: usize = 1024 * 1024;

impl Pipe {
    pub(super) fn new() -> Option<Box<Pipe>> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        let capacity = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32))
            .or_else(|_| fcntl(&write, FcntlArg::F_GETPIPE_SZ))
            .ok()? as usize;
        Some(Box::new(Pipe {
            read,
            write,
            capacity,
            buffered: 0,
            since: Instant::now(),
        }))
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes moved with splice(2) on this thread, for tests to prove the
    /// path is taken (each test runs its relay on its own thread).
    pub(super) static SPLICED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Splices into a pipe tried on this thread, for tests to prove an
    /// idle source is waited for, not polled.
    pub(super) static SPLICE_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn splice_flags() -> nix::fcntl::SpliceFFlags {
    nix::fcntl::SpliceFFlags::SPLICE_F_MOVE | nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK
}

/// How the frame after a spliced one moves, from a peek at its head.
pub(super) enum Next {
    /// A long data frame: spliced whole, header included, never copied.
    Splice,
    /// A short or control frame: ordinary reads from here on (the pipe is
    /// dropped once it is empty).
    Read,
    /// Nothing to decide on (end of stream, TLS, a head already cut): one
    /// read of at most a header, the pipe kept.
    ReadHead,
}

impl Half {
    /// Following frames, a spliced payload ended: decides how the next
    /// frame moves. `Ready(Ok(true))`: splice it; `false`: read it (the
    /// pipe is empty, and dropped unless only a header-sized read is
    /// needed). When the source has nothing yet, what the pipe gathered
    /// goes out and the pipe is dropped (an idle tunnel holds none).
    pub(super) fn poll_next_frame<S: Transport, D: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        src: &S,
        dst: &mut D,
        activity: &mut bool,
        track: &mut Tracker,
    ) -> Poll<Result<bool, Side>> {
        let next = match Half::poll_peek_header(cx, src, track) {
            Poll::Ready(next) => next?,
            Poll::Pending => {
                ready!(self.poll_drain(cx, dst, activity))?;
                self.pipe = None;
                return Poll::Pending;
            }
        };
        if let Next::Splice = next {
            return Poll::Ready(Ok(true));
        }
        ready!(self.poll_drain(cx, dst, activity))?;
        if let Next::Read = next {
            self.pipe = None; // not a bulk frame: back to ordinary reads
        }
        Poll::Ready(Ok(false))
    }

    /// Peeks at the next frame head in the socket, to decide how it moves
    /// ([`Next`]).
    fn poll_peek_header<S: Transport>(
        cx: &mut Context<'_>,
        src: &S,
        track: &mut Tracker,
    ) -> Poll<Result<Next, Side>> {
        let Some(s) = src.tcp().filter(|_| track.held().is_empty()) else {
            return Poll::Ready(Ok(Next::ReadHead));
        };
        let mut peek = [0u8; HEADER_READ];
        let mut rb = ReadBuf::new(&mut peek);
        match ready!(s.poll_peek(cx, &mut rb)) {
            Err(e) => Poll::Ready(Err(Side::Src(e))),
            Ok(0) => Poll::Ready(Ok(Next::ReadHead)),
            Ok(n) => match track.splice_header(&peek[..n], SPLICE_MIN_PAYLOAD) {
                Peeked::Splice => Poll::Ready(Ok(Next::Splice)),
                Peeked::Violation => Poll::Ready(Err(Side::Stop)),
                Peeked::No => Poll::Ready(Ok(Next::Read)),
            },
        }
    }

    /// Moves what the pipe holds into `dst`. `Ready(Ok)` once it is empty
    /// (or there is no pipe).
    pub(super) fn poll_drain<D: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut D,
        activity: &mut bool,
    ) -> Poll<Result<(), Side>> {
        let Some(pipe) = self.pipe.as_mut().filter(|p| p.buffered > 0) else {
            return Poll::Ready(Ok(()));
        };
        // A pipe is made only between two TCP sockets.
        let Some(d) = dst.tcp() else {
            self.pipe = None;
            return Poll::Ready(Ok(()));
        };
        while pipe.buffered > 0 {
            ready!(d.poll_write_ready(cx)).map_err(Side::Dst)?;
            let moved = d.try_io(Interest::WRITABLE, || {
                nix::fcntl::splice(&pipe.read, None, d, None, pipe.buffered, splice_flags())
                    .map_err(io::Error::from)
            });
            match moved {
                Ok(0) => return Poll::Ready(Err(Side::Dst(io::ErrorKind::WriteZero.into()))),
                Ok(n) => {
                    pipe.buffered -= n;
                    pipe.since = Instant::now();
                    self.written += n as u64;
                    *activity = true;
                    #[cfg(test)]
                    SPLICED.with(|c| c.set(c.get() + n as u64));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(Side::Dst(e))),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// One step of a spliced transfer. `Ready(Ok)` means progress (or the
    /// pipe was dropped because the source went idle): call again.
    ///
    /// As a byte relay: drain the pipe into `dst`, then refill it from
    /// `src`. Following frames: only whole frames go in (the next header is
    /// looked at first), and they gather in the pipe while the source has
    /// more, so a run of 64 KiB frames costs a peek and a splice each into
    /// the pipe and one splice out per pipeful. The pipe is drained when it
    /// is full, when the source pauses and before anything else is written.
    pub(super) fn poll_splice<S: Transport, D: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
        activity: &mut bool,
        track: Option<&mut Tracker>,
    ) -> Poll<Result<(), Side>> {
        let (Some(s), Some(_)) = (src.tcp(), dst.tcp()) else {
            self.pipe = None;
            return Poll::Ready(Ok(()));
        };
        let pipe = self.pipe.as_ref().expect("splice mode has a pipe");
        if track.is_none() || pipe.buffered == pipe.capacity {
            // A byte relay, or a full pipe: empty it first.
            ready!(self.poll_drain(cx, dst, activity))?;
        }
        let pipe = self.pipe.as_mut().expect("splice mode has a pipe");
        let want = match &track {
            Some(t) => (pipe.capacity - pipe.buffered).min(t.payload_left() as usize),
            None => pipe.capacity,
        };
        if want == 0 {
            // The payload is through: the caller looks at the next header.
            return Poll::Ready(Ok(()));
        }
        let fill = |pipe: &Pipe| {
            #[cfg(test)]
            SPLICE_CALLS.with(|c| c.set(c.get() + 1));
            nix::fcntl::splice(s, None, &pipe.write, None, want, splice_flags())
                .map_err(io::Error::from)
        };
        let filled = if pipe.buffered > 0 {
            // Gathering frames. If the source has nothing now, what is
            // gathered goes out rather than waiting for more. EAGAIN here
            // may come from the pipe (its slots full before its bytes), so
            // it must not clear the socket's readiness: the pipe is drained
            // and the next call splices into an empty one.
            match s.poll_read_ready(cx) {
                Poll::Ready(r) => r.map_err(Side::Src)?,
                Poll::Pending => {
                    ready!(self.poll_drain(cx, dst, activity))?;
                    return Poll::Pending;
                }
            }
            match fill(pipe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.poll_drain(cx, dst, activity))?;
                    return Poll::Ready(Ok(()));
                }
                other => other,
            }
        } else {
            ready!(s.poll_read_ready(cx)).map_err(Side::Src)?;
            s.try_io(Interest::READABLE, || fill(pipe))
        };
        let pipe = self.pipe.as_mut().expect("splice mode has a pipe");
        match filled {
            Ok(0) => {
                // End of stream: the caller drains the pipe, then shuts
                // the destination down.
                self.eof = true;
                if pipe.buffered == 0 {
                    self.pipe = None;
                }
            }
            Ok(n) => {
                pipe.buffered += n;
                pipe.since = Instant::now();
                *activity = true;
                if let Some(t) = track {
                    t.skip(n as u64);
                }
            }
            // Idle (the pipe is empty here): back to ordinary reads, which
            // wait without holding anything.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pipe = None,
            Err(e) => return Poll::Ready(Err(Side::Src(e))),
        }
        Poll::Ready(Ok(()))
    }
}
