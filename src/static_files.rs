//! Static files beside the proxied locations: `root`, `alias`, `index`,
//! `try_files`, with nginx's statuses (301 for directories without a
//! slash, 403 for directories without an index, 404, 405 for methods other
//! than GET and HEAD); what the response filters need of a file (its
//! modification time, `ETag`, ranges allowed) is recorded on the reply.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Method;

use crate::http1::headers::HeaderValue;

use crate::config::{Alias, LocConf, TryFallback};
use crate::exchange::{Downstream, Exchange};
use crate::log::Level;
use crate::response::{Body, Reply};

/// What the content phase decided.
pub enum Content {
    /// Send this.
    Reply(Reply),
    /// Internal redirect to this URI (locations are searched again).
    Redirect(String),
    /// Continue in the named location.
    Named(String),
}

/// Maps a URI to a file path with `root` or `alias`. `whole` appends the
/// whole URI to a regex location's alias (a `try_files` name, or a URI
/// that `try_files` chose), as nginx does.
fn map_uri<D: Downstream>(ex: &mut Exchange<'_, D>, uri: &str, whole: bool) -> PathBuf {
    let conf = ex.conf.clone();
    let base = String::from_utf8_lossy(&ex.ctx.render(&conf.root.path)).into_owned();
    match &conf.root.alias {
        Alias::No => PathBuf::from(format!("{base}{uri}")),
        Alias::Prefix(p) => {
            let rest = uri.strip_prefix(p.as_str()).unwrap_or(uri);
            PathBuf::from(format!("{base}{rest}"))
        }
        Alias::Regex if whole => PathBuf::from(format!("{base}{uri}")),
        Alias::Regex => PathBuf::from(base),
    }
}

/// The content phase for locations that do not proxy.
pub async fn content<D: Downstream>(ex: &mut Exchange<'_, D>) -> Content {
    let conf = ex.conf.clone();
    let mut whole = false;
    if let Some(tf) = &conf.try_files {
        let mut hit = None;
        for file in &tf.files {
            let value = String::from_utf8_lossy(&ex.ctx.render(file)).into_owned();
            // A trailing slash asks for a directory; nginx tests (and then
            // uses) the name without it.
            let (name, dir) = match value.strip_suffix('/') {
                Some(n) if !n.is_empty() => (n.to_string(), true),
                _ => (value, false),
            };
            let path = map_uri(ex, &name, true);
            let found = match tokio::fs::metadata(&path).await {
                Ok(m) if dir => m.is_dir(),
                Ok(m) => m.is_file(),
                Err(_) => false,
            };
            if found {
                whole = !dir && conf.root.alias == Alias::Regex;
                hit = Some(name);
                break;
            }
        }
        match hit {
            Some(uri) => ex.ctx.uri = uri,
            None => {
                return match &tf.fallback {
                    TryFallback::Status(code) => {
                        Content::Reply(Reply::error(*code, conf.server_tokens))
                    }
                    TryFallback::Named(name) => Content::Named(name.clone()),
                    TryFallback::Uri(t) => {
                        let value = String::from_utf8_lossy(&ex.ctx.render(t)).into_owned();
                        match value.split_once('?') {
                            Some((u, a)) => {
                                ex.ctx.args = Some(a.to_string());
                                Content::Redirect(u.to_string())
                            }
                            None => Content::Redirect(value),
                        }
                    }
                };
            }
        }
    }
    // As nginx's static module: GET and HEAD are served; POST is looked
    // up (404 when missing) and refused only when a file is found.
    if !matches!(ex.ctx.method, Method::GET | Method::HEAD | Method::POST) {
        return Content::Reply(Reply::error(405, conf.server_tokens));
    }
    let uri = ex.ctx.uri.clone();
    if uri.ends_with('/') {
        return index(ex, &uri).await;
    }
    let path = map_uri(ex, &uri, whole);
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_dir() => {
            // The decoded URI goes out escaped, as nginx's.
            let mut to = format!("{}/", crate::route::escape_uri(&uri));
            if let Some(a) = &ex.ctx.args {
                to.push('?');
                to.push_str(a);
            }
            let to = ex.absolute_url(&to);
            Content::Reply(Reply::redirect(301, to.as_bytes(), conf.server_tokens))
        }
        Ok(_) => serve_file(ex, path).await,
        Err(e) => not_found(ex, &path, e),
    }
}

fn not_found<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    path: &std::path::Path,
    e: std::io::Error,
) -> Content {
    let tokens = ex.conf.server_tokens;
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            ex.log(
                Level::Crit,
                &format!(
                    "open() \"{}\" failed {}",
                    path.display(),
                    crate::log::os_error(&e)
                ),
                None,
            );
            Content::Reply(Reply::error(403, tokens))
        }
        _ => {
            if ex.conf.log_not_found {
                ex.log(
                    Level::Error,
                    &format!(
                        "open() \"{}\" failed {}",
                        path.display(),
                        crate::log::os_error(&e)
                    ),
                    None,
                );
            }
            Content::Reply(Reply::error(404, tokens))
        }
    }
}

async fn index<D: Downstream>(ex: &mut Exchange<'_, D>, uri: &str) -> Content {
    let conf = ex.conf.clone();
    let dir = map_uri(ex, uri, false);
    let mut last_err = None;
    for name in &conf.index {
        let name = String::from_utf8_lossy(&ex.ctx.render(name)).into_owned();
        if name.starts_with('/') {
            return Content::Redirect(name);
        }
        let candidate = dir.join(&name);
        match tokio::fs::metadata(&candidate).await {
            Ok(m) if m.is_file() => return Content::Redirect(format!("{uri}{name}")),
            Ok(_) => {}
            Err(e) => last_err = Some((candidate, e)),
        }
    }
    match tokio::fs::metadata(&dir).await {
        Ok(m) if m.is_dir() => {
            ex.log(
                Level::Error,
                &format!("directory index of \"{}\" is forbidden", dir.display()),
                None,
            );
            Content::Reply(Reply::error(403, conf.server_tokens))
        }
        _ => {
            if let Some((path, e)) = last_err
                && conf.log_not_found
            {
                ex.log(
                    Level::Error,
                    &format!(
                        "\"{}\" is not found {}",
                        path.display(),
                        crate::log::os_error(&e)
                    ),
                    None,
                );
            }
            Content::Reply(Reply::error(404, conf.server_tokens))
        }
    }
}

async fn serve_file<D: Downstream>(ex: &mut Exchange<'_, D>, path: PathBuf) -> Content {
    let conf = ex.conf.clone();
    // Opened without blocking (a FIFO would otherwise wait for a writer),
    // then checked through the open descriptor: what is served is what
    // was checked, even if the path changes meanwhile.
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .await;
    let file = match opened {
        Ok(f) => f,
        Err(e) => return not_found(ex, &path, e),
    };
    let meta = match file.metadata().await {
        Ok(m) => m,
        Err(e) => return not_found(ex, &path, e),
    };
    if !meta.is_file() {
        ex.log(
            Level::Crit,
            &format!("\"{}\" is not a regular file", path.display()),
            None,
        );
        return Content::Reply(Reply::error(404, conf.server_tokens));
    }
    if ex.ctx.method == Method::POST {
        return Content::Reply(Reply::error(405, conf.server_tokens));
    }
    let len = meta.len();
    let mut reply = Reply::empty(200);
    let ctype = content_type(&conf, &path);
    {
        let v = HeaderValue::from_string(String::from(ctype));
        reply.headers.append_str("Content-Type", v);
    }
    // What nginx's static module records: the modification time (written
    // as Last-Modified by the framing, compared by conditional requests and
    // If-Range), the ETag, and that ranges may be served.
    let mtime = {
        use std::os::unix::fs::MetadataExt;
        meta.mtime()
    };
    reply.entity.last_modified = Some(mtime);
    reply.entity.ranges = crate::response::Ranges::Multi;
    if conf.filters.etag {
        reply.headers.append_str(
            "ETag",
            HeaderValue::from_string(format!("\"{mtime:x}-{len:x}\"")),
        );
    }
    reply.body = if len == 0 {
        Body::Full(Bytes::new())
    } else {
        Body::File(file, len)
    };
    Content::Reply(reply)
}

/// The `Content-Type` of a file: its extension (what follows the last dot
/// of the name, as nginx takes it) looked up in the location's `types`, or
/// in the built-in table when no `types` block is configured; otherwise
/// `default_type`.
fn content_type<'c>(conf: &'c LocConf, path: &Path) -> &'c str {
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    let ext = match memchr::memrchr(b'.', name) {
        Some(dot) => String::from_utf8_lossy(&name[dot + 1..]).to_ascii_lowercase(),
        None => return &conf.default_type,
    };
    let found = match &conf.types {
        Some(types) => types.get(&ext).map(String::as_str),
        None => builtin_type(&ext),
    };
    found.unwrap_or(&conf.default_type)
}

/// The built-in table: common entries of nginx's `mime.types`, used when
/// the configuration has no `types` block (nginx itself would know only
/// `html`, `gif` and `jpg` then, and configurations include `mime.types`).
fn builtin_type(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "html" | "htm" | "shtml" => "text/html",
        "css" => "text/css",
        "xml" => "text/xml",
        "gif" => "image/gif",
        "jpeg" | "jpg" => "image/jpeg",
        "js" | "mjs" => "application/javascript",
        "txt" => "text/plain",
        "png" => "image/png",
        "svg" | "svgz" => "image/svg+xml",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "bin" | "exe" | "dll" | "iso" | "img" => "application/octet-stream",
        _ => return None,
    })
}
