//! `auth_basic`: the password of an `Authorization: Basic` header checked
//! against a password file, read at each request as nginx reads it.

use std::path::PathBuf;

use super::Verdict;
use crate::config::AuthBasic;
use crate::exchange::{Downstream, Exchange};
use crate::log::Level;
use crate::request::basic_credentials;
use crate::response::Reply;

/// The `auth_basic` step of the access phase.
pub async fn check<D: Downstream>(ex: &mut Exchange<'_, D>, auth: &AuthBasic) -> Verdict {
    let realm = ex.ctx.render(&auth.realm);
    if realm == b"off" {
        return Verdict::Declined;
    }
    let Some((user, password)) = basic_credentials(&ex.ctx.headers) else {
        ex.log(
            Level::Info,
            "no user/password was provided for basic authentication",
            None,
        );
        return Verdict::Refused(challenge(ex, &realm));
    };
    let file = ex.ctx.render(&auth.user_file);
    let mut path = PathBuf::from(String::from_utf8_lossy(&file).into_owned());
    if path.is_relative() {
        path = auth.conf_dir.join(path);
    }
    let contents = match tokio::fs::read(&path).await {
        Ok(c) => c,
        Err(e) => {
            let (level, status) = if e.kind() == std::io::ErrorKind::NotFound {
                (Level::Error, 403)
            } else {
                (Level::Crit, 500)
            };
            ex.log(
                level,
                &format!(
                    "open() \"{}\" failed {}",
                    path.display(),
                    crate::log::os_error(&e)
                ),
                None,
            );
            return Verdict::Refused(Reply::error(status, ex.conf.server_tokens));
        }
    };
    let Some(stored) = lookup(&contents, &user) else {
        ex.log(
            Level::Error,
            &format!(
                "user \"{}\" was not found in \"{}\"",
                String::from_utf8_lossy(&user),
                path.display()
            ),
            None,
        );
        return Verdict::Refused(challenge(ex, &realm));
    };
    // Hashes such as bcrypt and yescrypt take milliseconds of CPU: off
    // the connection tasks' threads.
    let verdict =
        tokio::task::spawn_blocking(move || super::crypt::verify(&password, &stored)).await;
    match verdict {
        Ok(Ok(true)) => Verdict::Allowed,
        Ok(Ok(false)) => {
            ex.log(
                Level::Error,
                &format!(
                    "user \"{}\": password mismatch",
                    String::from_utf8_lossy(&user)
                ),
                None,
            );
            Verdict::Refused(challenge(ex, &realm))
        }
        Ok(Err(_)) | Err(_) => {
            ex.log(
                Level::Crit,
                &format!(
                    "crypt() failed for user \"{}\" in \"{}\": unsupported password hash",
                    String::from_utf8_lossy(&user),
                    path.display()
                ),
                None,
            );
            Verdict::Refused(Reply::error(500, ex.conf.server_tokens))
        }
    }
}

/// 401 with the realm to log in to.
fn challenge<D: Downstream>(ex: &Exchange<'_, D>, realm: &[u8]) -> Reply {
    let mut reply = Reply::error(401, ex.conf.server_tokens);
    let mut value = b"Basic realm=\"".to_vec();
    value.extend_from_slice(realm);
    value.push(b'"');
    reply.headers.append_str(
        "WWW-Authenticate",
        crate::http1::headers::HeaderValue::from_bytes(&value),
    );
    reply
}

/// The stored hash of `user` in a password file, as nginx scans it: lines
/// `user:hash[:comment]`, the first matching one wins; lines starting with
/// `#` or a carriage return are skipped; the hash ends at `:`, CR or LF.
pub fn lookup(contents: &[u8], user: &[u8]) -> Option<Vec<u8>> {
    for line in contents.split(|&b| b == b'\n') {
        if line.first().is_some_and(|&b| b == b'#' || b == b'\r') {
            continue;
        }
        let Some(rest) = line.strip_prefix(user).and_then(|r| r.strip_prefix(b":")) else {
            continue;
        };
        let end = rest
            .iter()
            .position(|&b| b == b':' || b == b'\r')
            .unwrap_or(rest.len());
        return Some(rest[..end].to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn basic_lookup_reads_files_as_nginx() {
        let file = b"# comment\n\r\nalice:{PLAIN}a:comment\nbob:{PLAIN}b\r\nalice:{PLAIN}second\ncarol:{PLAIN}c";
        assert_eq!(lookup(file, b"alice").as_deref(), Some(&b"{PLAIN}a"[..]));
        assert_eq!(lookup(file, b"bob").as_deref(), Some(&b"{PLAIN}b"[..]));
        // The last line needs no newline.
        assert_eq!(lookup(file, b"carol").as_deref(), Some(&b"{PLAIN}c"[..]));
        // Whole names only.
        assert_eq!(lookup(file, b"ali"), None);
        assert_eq!(lookup(file, b"# comment"), None);
        assert_eq!(lookup(b"dave:", b"dave").as_deref(), Some(&b""[..]));
    }
}
