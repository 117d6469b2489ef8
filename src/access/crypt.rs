//! Password hashes as nginx's `ngx_crypt` checks them for
//! `auth_basic_user_file`: its own `$apr1$`, `{PLAIN}`, `{SHA}` and
//! `{SSHA}`, and what the C library's `crypt()` knows on a current Linux
//! system (yescrypt `$y$`, bcrypt `$2a$`/`$2b$`/`$2y$`, SHA-crypt `$5$` and
//! `$6$`, MD5-crypt `$1$`, SHA1-crypt `$sha1$`, BSDi `_`, traditional DES).
//!
//! Every comparison of a computed hash with the stored one takes the same
//! time whatever their contents.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq as _;

/// A stored hash that cannot be checked (nginx's `crypt()` failure: the
/// request is answered 500).
#[derive(Debug, PartialEq, Eq)]
pub struct Unusable;

/// Whether `password` matches `stored`, one entry of a password file.
pub fn verify(password: &[u8], stored: &[u8]) -> Result<bool, Unusable> {
    if let Some(rest) = stored.strip_prefix(b"$apr1$") {
        let salt = salt_of(rest);
        let computed = md5_crypt(password, b"$apr1$", salt);
        return Ok(same(&computed, stored));
    }
    if let Some(plain) = stored.strip_prefix(b"{PLAIN}") {
        return Ok(same(password, plain));
    }
    // A {SSHA} or {SHA} value that does not decode to a digest matches no
    // password, as in nginx.
    if let Some(encoded) = stored.strip_prefix(b"{SSHA}") {
        let Some(raw) = decode(encoded).filter(|r| r.len() >= 20) else {
            return Ok(false);
        };
        let (digest, salt) = raw.split_at(20);
        let mut input = password.to_vec();
        input.extend_from_slice(salt);
        return Ok(same(&sha1(&input), digest));
    }
    if let Some(encoded) = stored.strip_prefix(b"{SHA}") {
        let Some(raw) = decode(encoded) else {
            return Ok(false);
        };
        return Ok(same(&sha1(password), &raw));
    }
    libc_crypt(password, stored)
}

/// What `crypt()` would compute for the schemes of the C library.
fn libc_crypt(password: &[u8], stored: &[u8]) -> Result<bool, Unusable> {
    let text = std::str::from_utf8(stored).map_err(|_| Unusable)?;
    if let Some(rest) = stored.strip_prefix(b"$1$") {
        let computed = md5_crypt(password, b"$1$", salt_of(rest));
        return Ok(same(&computed, stored));
    }
    if text.starts_with("$y$") {
        use yescrypt::PasswordVerifier as _;
        // The verifier compares in constant time itself.
        return match yescrypt::Yescrypt::default().verify_password(password, text) {
            Ok(()) => Ok(true),
            Err(yescrypt::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(_) => Err(Unusable),
        };
    }
    if text.starts_with('$') && !known_dollar_scheme(text) {
        return Err(Unusable);
    }
    let computed = pwhash::unix::crypt(password, text).map_err(|_| Unusable)?;
    Ok(same(computed.as_bytes(), stored))
}

/// The `$id$` schemes handed to the crypt implementations.
fn known_dollar_scheme(text: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$5$", "$6$", "$sha1$"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// MD5-crypt with `magic` (`$1$` or Apache's `$apr1$`): the salt is at
/// most 8 bytes, up to the next `$`.
fn salt_of(rest: &[u8]) -> &[u8] {
    let end = rest.iter().position(|&b| b == b'$').unwrap_or(rest.len());
    &rest[..end.min(8)]
}

/// The MD5-crypt algorithm (Poul-Henning Kamp's, as FreeBSD and Apache
/// publish it): `magic salt $ hash`.
fn md5_crypt(password: &[u8], magic: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut sum = ctx.finalize();

    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(sum);
        } else {
            c.update(password);
        }
        sum = c.finalize();
    }

    let mut out = Vec::with_capacity(magic.len() + salt.len() + 23);
    out.extend_from_slice(magic);
    out.extend_from_slice(salt);
    out.push(b'$');
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        let v = (u32::from(sum[a]) << 16) | (u32::from(sum[b]) << 8) | u32::from(sum[c]);
        to64(&mut out, v, 4);
    }
    to64(&mut out, u32::from(sum[11]), 2);
    out
}

/// crypt's base-64: `n` characters, least significant six bits first.
fn to64(out: &mut Vec<u8>, mut v: u32, n: usize) {
    const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..n {
        out.push(ALPHABET[(v & 0x3f) as usize]);
        v >>= 6;
    }
}

fn sha1(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

fn decode(encoded: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hashes of "secret" made with openssl passwd and the C library's
    // crypt() of a Debian system.
    const SECRET: &[&str] = &[
        "$apr1$SaltSalt$.wTsZyhsHljboa7m4Bjlg1",
        "$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
        "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
        "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
        "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
        "$y$j9T$abcdefghijklmnop$3dL1LkYnZM.OVXuVdnnaKVDlLYT92dRwOzDZ5XiVCe.",
        "abNANd1rDfiNc",
        "_J9..abcd/H6HLCcf7nw",
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
        "{SSHA}1G904nLkTkGWjKNnQuB/hpWXC/hzYWx0c2FsdA==",
        "{PLAIN}secret",
    ];

    #[test]
    fn crypt_every_scheme_accepts_the_password_and_only_it() {
        for hash in SECRET {
            assert_eq!(verify(b"secret", hash.as_bytes()), Ok(true), "{hash}");
            assert_eq!(verify(b"secreT", hash.as_bytes()), Ok(false), "{hash}");
            assert_eq!(verify(b"", hash.as_bytes()), Ok(false), "{hash}");
        }
    }

    #[test]
    fn crypt_md5_handles_empty_and_long_passwords() {
        assert_eq!(verify(b"", b"$1$abc$Or2rbeUYTvt12aiVzMuS/."), Ok(true));
        let long = b"a very long password that exceeds sixteen bytes";
        assert_eq!(verify(long, b"$1$abc$.TlkCZp1eJPewQyifgWHU1"), Ok(true));
    }

    #[test]
    fn crypt_broken_hashes_are_errors_or_mismatches_as_in_nginx() {
        for hash in ["$9$unknown$scheme", "!x"] {
            assert_eq!(verify(b"secret", hash.as_bytes()), Err(Unusable), "{hash}");
        }
        for hash in ["{SHA}not base64!", "{SSHA}c2hvcnQ=", "$1$", "$apr1$"] {
            assert_eq!(verify(b"secret", hash.as_bytes()), Ok(false), "{hash}");
        }
        // Text that is not a hash is a DES salt to crypt(): a mismatch.
        assert_eq!(verify(b"plaintext", b"plaintext"), Ok(false));
    }
}
