//! Access logs: paths with variables (and nginx's root check before
//! writing one), `open_log_file_cache`, `buffer=`/`flush=`/`gzip`, the
//! escaping of values not found, and the loader's verdicts. Flushing at
//! exit and on `-s reopen` is tested on the binary in cli.rs.

use std::io::Read as _;
use std::path::Path;

use crate::harness::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn status(proxy: &Proxy, uri: &str) -> u16 {
    get_response(proxy.addr(), uri).await.status
}

#[tokio::test]
async fn access_log_paths_with_variables_write_where_the_request_says() {
    let proxy = Proxy::http(
        r#"
        log_format plain '$uri';
        server {
            listen 127.0.0.1:0;
            root {dir};
            location /site { access_log {dir}/logs/site_$arg_name.log plain; return 200 ok; }
            location /noroot {
                root {dir}/missing;
                access_log {dir}/logs/noroot_$arg_name.log plain;
                return 200 ok;
            }
            location /nodir { access_log {dir}/gone/$arg_name.log plain; return 200 ok; }
        }"#,
    )
    .await;
    let dir = proxy.dir.path();
    std::fs::create_dir(dir.join("logs")).unwrap();
    assert_eq!(status(&proxy, "/site/a?name=one").await, 200);
    assert_eq!(status(&proxy, "/site/b?name=two").await, 200);
    assert_eq!(status(&proxy, "/site/c?name=one").await, 200);
    assert_eq!(read(&dir.join("logs/site_one.log")), "/site/a\n/site/c\n");
    assert_eq!(read(&dir.join("logs/site_two.log")), "/site/b\n");
    // A root directory that does not exist: no file, an error line.
    assert_eq!(status(&proxy, "/noroot?name=x").await, 200);
    assert!(!dir.join("logs/noroot_x.log").exists());
    proxy
        .assert_error_logged(&format!(
            "testing \"{}/missing\" existence failed (2: No such file or directory)",
            dir.display()
        ))
        .await;
    // A file that cannot be opened: the request is served, the error logged.
    assert_eq!(status(&proxy, "/nodir?name=y").await, 200);
    let failed = format!(
        "open() \"{}/gone/y.log\" failed (2: No such file or directory)",
        dir.display()
    );
    proxy.assert_error_logged(&failed).await;
    let log = proxy.error_log();
    let line = log.lines().find(|l| l.contains(&failed)).unwrap();
    assert!(line.contains("[crit]"), "{line}");
}

/// Logs a numbered line to `logs/NAME` for each name of `before`, moves
/// `logs` to `moved`, then logs to each name of `after`.
async fn write_then_move(proxy: &Proxy, before: &[&str], after: &[&str]) {
    let dir = proxy.dir.path();
    std::fs::create_dir(dir.join("logs")).unwrap();
    let mut n = std::collections::HashMap::new();
    let mut log = async |f: &str| {
        let n = n.entry(f.to_string()).or_insert(0);
        *n += 1;
        assert_eq!(status(proxy, &format!("/?f={f}&n={n}")).await, 200);
    };
    for f in before {
        log(f).await;
    }
    std::fs::rename(dir.join("logs"), dir.join("moved")).unwrap();
    for f in after {
        log(f).await;
    }
}

#[tokio::test]
async fn open_log_file_cache_keeps_used_descriptors_open() {
    let proxy = Proxy::http(
        r#"
        log_format plain '$arg_n';
        server {
            listen 127.0.0.1:0;
            root {dir};
            location / {
                open_log_file_cache max=3 inactive=1m min_uses=2 valid=1m;
                access_log {dir}/logs/$arg_f plain;
                return 200 ok;
            }
        }"#,
    )
    .await;
    // a and c were written twice (min_uses=2) and are held open; b once.
    // With the directory moved away, held descriptors still write to the
    // files they have; the others cannot be opened.
    let dir = proxy.dir.path();
    write_then_move(&proxy, &["a", "a", "b", "c", "c"], &["a", "b", "c"]).await;
    assert_eq!(read(&dir.join("moved/a")), "1\n2\n3\n");
    assert_eq!(read(&dir.join("moved/b")), "1\n");
    assert_eq!(read(&dir.join("moved/c")), "1\n2\n3\n");
    proxy.assert_error_logged("/logs/b\" failed (2: ").await;
}

#[tokio::test]
async fn open_log_file_cache_makes_room_by_dropping_the_least_recent_path() {
    let proxy = Proxy::http(
        r#"
        log_format plain '$arg_n';
        server {
            listen 127.0.0.1:0;
            root {dir};
            open_log_file_cache max=2;
            location / { access_log {dir}/logs/$arg_f plain; return 200 ok; }
        }"#,
    )
    .await;
    let dir = proxy.dir.path();
    write_then_move(&proxy, &["a", "b", "c"], &["a", "b", "c"]).await;
    // max=2: a made room for c.
    assert_eq!(read(&dir.join("moved/a")), "1\n");
    assert_eq!(read(&dir.join("moved/b")), "1\n2\n");
    assert_eq!(read(&dir.join("moved/c")), "1\n2\n");
}

#[tokio::test]
async fn buffered_access_logs_write_when_full_or_after_flush_time() {
    let proxy = Proxy::http(
        r#"
        log_format plain '$uri';
        server {
            listen 127.0.0.1:0;
            location /timed { access_log {dir}/timed.log plain buffer=64k flush=300ms; return 200 ok; }
            location /full { access_log {dir}/full.log plain buffer=100; return 200 ok; }
            location /gz { access_log {dir}/gz.log plain gzip=9 flush=200ms; return 200 ok; }
        }"#,
    )
    .await;
    let dir = proxy.dir.path().to_path_buf();
    assert_eq!(status(&proxy, "/timed/1").await, 200);
    assert_eq!(status(&proxy, "/timed/2").await, 200);
    // Held in the buffer, then written together once flush= passes.
    assert_eq!(read(&dir.join("timed.log")), "");
    assert!(
        eventually(|| read(&dir.join("timed.log")) == "/timed/1\n/timed/2\n").await,
        "{:?}",
        read(&dir.join("timed.log"))
    );

    // 100 bytes: the line that does not fit writes the ones before it.
    let uri = format!("/full/{}", "x".repeat(40));
    for _ in 0..2 {
        assert_eq!(status(&proxy, &uri).await, 200);
    }
    assert_eq!(read(&dir.join("full.log")), "");
    assert_eq!(status(&proxy, &uri).await, 200);
    assert_eq!(read(&dir.join("full.log")), format!("{uri}\n{uri}\n"));

    // gzip: each write is one gzip member; together they read as the lines.
    assert_eq!(status(&proxy, "/gz/1").await, 200);
    assert!(eventually(|| !read_bytes(&dir.join("gz.log")).is_empty()).await);
    assert_eq!(status(&proxy, "/gz/2").await, 200);
    let two_members = || {
        let bytes = read_bytes(&dir.join("gz.log"));
        bytes.windows(3).filter(|w| *w == [0x1f, 0x8b, 8]).count() == 2
    };
    assert!(eventually(two_members).await, "no second gzip member");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&read_bytes(&dir.join("gz.log"))[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "/gz/1\n/gz/2\n");
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test]
async fn unescaped_and_json_formats_print_nothing_for_a_missing_variable() {
    let proxy = Proxy::http(
        r#"
        log_format dflt '[$uri][$http_x_c]';
        log_format none escape=none '[$uri][$http_x_c]';
        log_format json escape=json '[$uri][$http_x_c]';
        server {
            listen 127.0.0.1:0;
            location / {
                access_log {dir}/dflt.log dflt;
                access_log {dir}/none.log none;
                access_log {dir}/json.log json;
                return 200 ok;
            }
        }"#,
    )
    .await;
    assert_eq!(status(&proxy, "/%22a%1Bb").await, 200);
    let dir = proxy.dir.path();
    assert_eq!(read(&dir.join("dflt.log")), "[/\\x22a\\x1Bb][-]\n");
    assert_eq!(read(&dir.join("none.log")), "[/\"a\x1bb][]\n");
    assert_eq!(read(&dir.join("json.log")), "[/\\\"a\\u001Bb][]\n");
}

#[test]
fn access_log_parameters_are_checked_as_nginx_does() {
    let err = http_config_error;
    for (conf, want) in [
        (
            "access_log /tmp/a.log combined buffer=0;",
            "invalid buffer size \"0\"",
        ),
        (
            "access_log /tmp/a.log combined buffer=x;",
            "invalid buffer size \"x\"",
        ),
        (
            "access_log /tmp/a.log combined flush=0;",
            "invalid flush time \"0\"",
        ),
        (
            "access_log /tmp/a.log combined flush=1s;",
            "no buffer is defined for access_log \"/tmp/a.log\"",
        ),
        (
            "access_log /tmp/a.log combined gzip=10;",
            "invalid compression level \"10\"",
        ),
        (
            "access_log /tmp/$host.log combined buffer=4k;",
            "buffered logs cannot have variables in name",
        ),
        (
            "access_log /tmp/a.log combined buffer=4k; server { access_log /tmp/a.log combined buffer=8k; }",
            "access_log \"/tmp/a.log\" already defined with conflicting parameters",
        ),
        (
            "access_log /tmp/a.log combined nope;",
            "invalid parameter \"nope\"",
        ),
        (
            "open_log_file_cache inactive=1s;",
            "\"open_log_file_cache\" must have \"max\" parameter",
        ),
        ("open_log_file_cache max=0;", "must have \"max\" parameter"),
        (
            "open_log_file_cache max=x;",
            "invalid \"open_log_file_cache\" parameter \"max=x\"",
        ),
        (
            "open_log_file_cache size=1;",
            "invalid \"open_log_file_cache\" parameter \"size=1\"",
        ),
        (
            "open_log_file_cache off; open_log_file_cache off;",
            "is duplicate",
        ),
    ] {
        let e = err(conf);
        assert!(e.contains(want), "{conf}: {e}");
    }
    // Agreeing buffers for one file, and `gzip` alone, load.
    for ok in [
        "access_log /tmp/a.log combined buffer=4k; server { access_log /tmp/a.log combined buffer=4k; }",
        "access_log /tmp/a.log combined gzip;",
        "open_log_file_cache off;",
        "open_log_file_cache max=10 inactive=20s min_uses=2 valid=1m;",
    ] {
        assert_eq!(err(ok), "", "{ok}");
    }
}
