//! The client's request body on its way to a backend: read whole first
//! (memory up to `client_body_buffer_size`, then an unlinked temporary
//! file), as nginx does by default, or streamed with
//! `proxy_request_buffering off`; `Expect: 100-continue` answered.

use std::time::Duration;

use tokio::time::timeout;

use bytes::{Bytes, BytesMut};
use http::Version;

use super::error::ProxyError;
use crate::config::model::BodyInFile;
use crate::exchange::{BodyReadError, Downstream, Exchange};
use crate::http1::BodyKind;
use crate::http1::body::{self, encode_chunk};
use crate::log::Level;
use crate::upstream::UpstreamConn;

pub(super) enum ReqBody {
    None,
    /// Read completely, in memory.
    Buffered(Bytes),
    /// Read completely, into an (already unlinked) temporary file of this
    /// length.
    Spooled(tokio::fs::File, u64),
    /// Copied from the client while it is sent.
    Stream(BodyKind),
}

/// Reads (or prepares to stream) the client's body.
pub(super) async fn prepare_body<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    version: Version,
) -> Result<ReqBody, ProxyError> {
    let conf = ex.conf.clone();
    let kind = ex.down.body_kind();
    let limit = conf.client_max_body_size;
    if let BodyKind::Length(n) = kind
        && limit > 0
        && n > limit
    {
        ex.keepalive = false;
        return Err(ProxyError::BodyTooLarge(n));
    }
    // nginx answers `Expect: 100-continue` whenever it reads a body for
    // the proxy, even an empty or replaced one.
    send_continue(ex).await;
    if let Some(t) = &conf.proxy.set_body {
        let b = ex.ctx.render(t);
        return Ok(ReqBody::Buffered(Bytes::from(b)));
    }
    if kind == BodyKind::None {
        return Ok(ReqBody::None);
    }
    if !conf.proxy.pass_request_body {
        return Ok(ReqBody::None);
    }
    // nginx reads the whole body first (so a failed attempt can be
    // retried on another server) unless `proxy_request_buffering off`; a
    // chunked body for an HTTP/1.0 backend must be read to learn its
    // length.
    let buffer = match kind {
        BodyKind::Length(_) => conf.proxy.request_buffering,
        _ => conf.proxy.request_buffering || version == Version::HTTP_10,
    };
    if !buffer {
        return Ok(ReqBody::Stream(kind));
    }
    let read = read_body(ex).await;
    if read.is_err() {
        ex.keepalive = false;
    }
    read
}

/// Reads the whole client body: in memory up to `client_body_buffer_size`,
/// in an unlinked temporary file beyond, as nginx does, so memory per
/// request stays bounded whatever `client_max_body_size` allows.
/// `client_body_timeout` bounds each read, not the whole body.
async fn read_body<D: Downstream>(ex: &mut Exchange<'_, D>) -> Result<ReqBody, ProxyError> {
    use tokio::io::AsyncWriteExt;
    let conf = ex.conf.clone();
    let limit = conf.client_max_body_size;
    let mut memory = BytesMut::new();
    let mut spool: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    let in_file = conf.client_body_in_file_only;
    if in_file != BodyInFile::Off {
        spool = Some(body_file(ex, in_file == BodyInFile::On).await?);
    }
    loop {
        let Some(chunk) = next_body_chunk(ex, conf.client_body_timeout).await? else {
            break;
        };
        total += chunk.len() as u64;
        if limit > 0 && total > limit {
            return Err(ProxyError::BodyTooLarge(total));
        }
        if let Some(file) = &mut spool {
            file.write_all(&chunk).await.map_err(ProxyError::BodyFile)?;
            continue;
        }
        if total > conf.client_body_buffer_size {
            let mut file = body_file(ex, false).await?;
            ex.log(
                Level::Warn,
                "a client request body is buffered to a temporary file",
                None,
            );
            file.write_all(&memory)
                .await
                .map_err(ProxyError::BodyFile)?;
            file.write_all(&chunk).await.map_err(ProxyError::BodyFile)?;
            memory = BytesMut::new();
            spool = Some(file);
            continue;
        }
        if memory.is_empty() && ex.down.body_done() {
            // The whole body in one piece: keep it without a copy.
            ex.ctx.request_length += total;
            ex.ctx.body.data = Some(chunk.clone());
            return Ok(ReqBody::Buffered(chunk));
        }
        memory.extend_from_slice(&chunk);
    }
    ex.ctx.request_length += total;
    Ok(match spool {
        Some(mut file) => {
            file.flush().await.map_err(ProxyError::BodyFile)?;
            ReqBody::Spooled(file, total)
        }
        None => {
            let body = memory.freeze();
            ex.ctx.body.data = Some(body.clone());
            ReqBody::Buffered(body)
        }
    })
}

/// A file for the request body, named by `$request_body_file`, removed
/// when the request ends unless `keep`.
async fn body_file<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    keep: bool,
) -> Result<tokio::fs::File, ProxyError> {
    let (file, path) = temp_file(ex.conf.client_body_temp_path.as_deref()).await?;
    ex.ctx.body.file = Some(crate::request::BodyFile { path, keep });
    Ok(file)
}

/// Creates a temporary file for a request body in `dir` (the system's
/// temporary directory when unset), readable by the owner only.
async fn temp_file(
    dir: Option<&std::path::Path>,
) -> Result<(tokio::fs::File, std::path::PathBuf), ProxyError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("switchyard-body-{}-{n}", std::process::id()));
    let mut options = tokio::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true).mode(0o600);
    let file = match options.open(&path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| ProxyError::BodyTemp(dir.display().to_string(), e))?;
            options.open(&path).await
        }
        other => other,
    }
    .map_err(|e| ProxyError::BodyTemp(path.display().to_string(), e))?;
    Ok((file, path))
}

/// The next piece of the client's body (`None` at its end), within
/// `client_body_timeout` for this read.
async fn next_body_chunk<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    limit: Duration,
) -> Result<Option<Bytes>, ProxyError> {
    ex.read_body(limit).await.map_err(|e| match e {
        BodyReadError::TimedOut => ProxyError::ClientBodyTimeout,
        BodyReadError::Io(e) => ProxyError::ClientBody(e),
    })
}

/// Writes request bytes to the backend within `proxy_send_timeout`.
pub(super) async fn send_upstream(
    up: &mut UpstreamConn,
    data: &[u8],
    limit: Duration,
) -> Result<(), ProxyError> {
    timeout(limit, crate::net::write_flushed(&mut up.io, data))
        .await
        .map_err(|_| ProxyError::SendTimeout)?
        .map_err(ProxyError::Send)
}

/// Sends a spooled body, from its start (each attempt sends it again).
pub(super) async fn send_spooled(
    file: &tokio::fs::File,
    up: &mut UpstreamConn,
    limit: Duration,
) -> Result<(), ProxyError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = file.try_clone().await.map_err(ProxyError::BodyFile)?;
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(ProxyError::BodyFile)?;
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut block).await.map_err(ProxyError::BodyFile)?;
        if n == 0 {
            return Ok(());
        }
        send_upstream(up, &block[..n], limit).await?;
    }
}

/// `Expect: 100-continue`: tell the client to send its body.
async fn send_continue<D: Downstream>(ex: &mut Exchange<'_, D>) {
    if ex.ctx.version == Version::HTTP_11
        && ex
            .ctx
            .headers
            .get(&http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        ex.down.send_continue().await;
    }
}

/// Copies a body that was not buffered from the client to the backend.
pub(super) async fn stream_body<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    up: &mut UpstreamConn,
    kind: BodyKind,
) -> Result<(), ProxyError> {
    let conf = ex.conf.clone();
    let limit = conf.client_max_body_size;
    let mut total: u64 = 0;
    let chunked = !matches!(kind, BodyKind::Length(_));
    let mut frame = Vec::new();
    loop {
        let next = match next_body_chunk(ex, conf.client_body_timeout).await {
            Ok(next) => next,
            Err(e) => {
                ex.keepalive = false;
                return Err(e);
            }
        };
        let data: &[u8] = match &next {
            Some(d) => d,
            None => {
                if chunked {
                    send_upstream(up, body::LAST_CHUNK, conf.proxy.send_timeout).await?;
                }
                ex.ctx.request_length += total;
                return Ok(());
            }
        };
        total += data.len() as u64;
        if limit > 0 && total > limit {
            ex.keepalive = false;
            return Err(ProxyError::BodyTooLarge(total));
        }
        let out: &[u8] = if chunked {
            frame.clear();
            encode_chunk(&mut frame, data);
            &frame
        } else {
            data
        };
        send_upstream(up, out, conf.proxy.send_timeout).await?;
    }
}
