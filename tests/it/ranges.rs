//! Range requests (nginx's range filter): single ranges, suffixes,
//! `multipart/byteranges` framed as nginx frames it, 416, `If-Range`,
//! HEAD, `max_ranges`, gzip, and proxied responses with
//! `proxy_force_ranges`.

use crate::conditional::file_at;
use crate::harness::*;

const MTIME: u64 = 1_600_000_000;
const MTIME_TEXT: &str = "Sun, 13 Sep 2020 12:26:40 GMT";

/// 80 bytes: "00" "01" ... "39".
fn numbers() -> String {
    (0..40).map(|i| format!("{i:02}")).collect()
}

fn tag() -> String {
    format!("\"{MTIME:x}-50\"")
}

async fn site(extra: &str) -> (Proxy, TempDir) {
    let site = TempDir::new();
    file_at(&site, "n.txt", &numbers(), MTIME);
    file_at(&site, "n.html", &numbers(), MTIME);
    file_at(&site, "zero.txt", "", MTIME);
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            root {root};
            location / {{ }}
            location /two/ {{ alias {root}/; max_ranges 2; }}
            location /none/ {{ alias {root}/; max_ranges 0; }}
            location /stamped/ {{ alias {root}/; add_header Last-Modified "Mon, 01 Jan 2001 01:01:01 GMT"; }}
            location /unstamped/ {{ alias {root}/; add_header Last-Modified ""; }}
            location /retagged/ {{ alias {root}/; add_header ETag '"mine"'; }}
            location /packed/ {{ alias {root}/; gzip on; gzip_min_length 1; }}
            location /utf/ {{ alias {root}/; charset utf-8; }}
            location /decor/ {{ alias {root}/; add_header X-Deco yes; add_header X-Any yes always; expires 1h; }}
            location = /text {{ return 200 "generated text"; }}
            location /paged/ {{ alias {root}/; error_page 416 /n.html; }}
            {extra}
        }}"#,
        root = site.path().display()
    ))
    .await;
    (proxy, site)
}

async fn ranged(proxy: &Proxy, method: &str, path: &str, headers: &str) -> Response {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n");
    Response::parse(&raw(proxy.addr(), req.as_bytes()).await)
}

async fn if_range(proxy: &Proxy, path: &str, validator: String) -> Response {
    let headers = format!("Range: bytes=0-1\r\nIf-Range: {validator}\r\n");
    ranged(proxy, "GET", path, &headers).await
}

async fn get_range(proxy: &Proxy, path: &str, spec: &str) -> Response {
    ranged(proxy, "GET", path, &format!("Range: {spec}\r\n")).await
}

#[tokio::test]
async fn ranges_single_ranges() {
    let (proxy, _site) = site("").await;
    let all = numbers();
    let cases = [
        ("bytes=4-9", "bytes 4-9/80", "020304"),
        ("bytes=-6", "bytes 74-79/80", "373839"),
        ("bytes=76-", "bytes 76-79/80", "3839"),
        ("bytes=70-5000", "bytes 70-79/80", "3536373839"),
        ("bytes=-500", "bytes 0-79/80", all.as_str()),
        ("bytes = 0-1", "", ""),
        ("BYTES=2-3", "bytes 2-3/80", "01"),
        ("bytes= 0 - 1 ", "bytes 0-1/80", "00"),
    ];
    for (spec, range, body) in cases {
        let r = get_range(&proxy, "/n.txt", spec).await;
        if range.is_empty() {
            // Not "bytes=": the whole file.
            assert_eq!(r.status, 200, "{spec}");
            continue;
        }
        assert_eq!(r.status, 206, "{spec}");
        assert_eq!(r.header("Content-Range").as_deref(), Some(range), "{spec}");
        assert_eq!(r.header("Content-Length"), Some(body.len().to_string()));
        assert_eq!(r.body, body, "{spec}");
        assert_eq!(r.header("Accept-Ranges"), None);
        assert_eq!(r.header("ETag"), Some(tag()));
        assert_eq!(r.header("Last-Modified").as_deref(), Some(MTIME_TEXT));
    }
    // The whole file says ranges are served.
    let r = ranged(&proxy, "GET", "/n.txt", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("bytes"));
}

#[tokio::test]
async fn ranges_multipart_body_is_framed_as_nginx() {
    let (proxy, _site) = site("").await;
    let r = get_range(&proxy, "/n.txt", "bytes=0-1,10-13,-2").await;
    assert_eq!(r.status, 206);
    let ct = r.header("Content-Type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart type");
    assert_eq!(boundary.len(), 20);
    assert!(boundary.bytes().all(|b| b.is_ascii_digit()));
    let part = |range: &str, data: &str| {
        format!(
            "\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes {range}/80\r\n\r\n{data}"
        )
    };
    let wanted = format!(
        "{}{}{}\r\n--{boundary}--\r\n",
        part("0-1", "00"),
        part("10-13", "0506"),
        part("78-79", "39")
    );
    assert_eq!(r.body, wanted);
    assert_eq!(r.header("Content-Length"), Some(wanted.len().to_string()));
    assert_eq!(r.header("Content-Range"), None);
    // Each multipart response has its own boundary; a charset shows in
    // the parts' type.
    let r = get_range(&proxy, "/utf/n.html", "bytes=0-0,2-2").await;
    let ct = r.header("Content-Type").unwrap();
    assert_ne!(ct, format!("multipart/byteranges; boundary={boundary}"));
    assert!(r.body.contains(
        "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Range: bytes 0-0/80\r\n\r\n0"
    ));
    // An unsatisfiable range among others is left out.
    let r = get_range(&proxy, "/n.txt", "bytes=0-0,900-,2-2").await;
    assert_eq!(r.status, 206);
    assert!(!r.body.contains("900"));
    assert_eq!(r.body.matches("Content-Range: bytes").count(), 2);
}

#[tokio::test]
async fn ranges_unsatisfiable_and_ignored_ranges() {
    let (proxy, _site) = site("").await;
    for spec in [
        "bytes=80-",
        "bytes=x",
        "bytes=3-y",
        "bytes=7",
        "bytes=1-2 4-5",
        "bytes=9-3",
    ] {
        let r = get_range(&proxy, "/decor/n.txt", spec).await;
        assert_eq!(r.status, 416, "{spec}");
        assert_eq!(r.header("Content-Range").as_deref(), Some("bytes */80"));
        assert!(
            r.body
                .contains("<title>416 Requested Range Not Satisfiable</title>")
        );
        assert_eq!(r.header("Content-Type").as_deref(), Some("text/html"));
        for gone in ["ETag", "Last-Modified", "Accept-Ranges"] {
            assert_eq!(r.header(gone), None, "{gone} on a 416");
        }
        // What the headers filter added for the 200 stays, as in nginx.
        assert_eq!(r.header("X-Deco").as_deref(), Some("yes"));
        assert_eq!(r.header("Cache-Control").as_deref(), Some("max-age=3600"));
    }
    // Unlike nginx, error_page does not apply to this 416.
    let r = get_range(&proxy, "/paged/n.txt", "bytes=80-").await;
    assert_eq!(r.status, 416);
    assert!(r.body.contains("416 Requested Range Not Satisfiable"));
    // nginx's second pass through its headers filter repeats `always` ones.
    let r = get_range(&proxy, "/decor/n.txt", "bytes=80-").await;
    assert_eq!(r.head.matches("X-Any: yes").count(), 2);
    // Ranges adding up to more than the file: the whole file.
    let r = get_range(&proxy, "/n.txt", "bytes=0-79,0-0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, numbers());
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("bytes"));
    // Other units are not ranges.
    assert_eq!(get_range(&proxy, "/n.txt", "lines=1-2").await.status, 200);
    // An empty file: from 0 is the whole (empty) file, beyond is 416.
    let r = get_range(&proxy, "/zero.txt", "bytes=0-").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(get_range(&proxy, "/zero.txt", "bytes=-3").await.status, 200);
    assert_eq!(get_range(&proxy, "/zero.txt", "bytes=3-").await.status, 416);
}

#[tokio::test]
async fn ranges_if_range() {
    let (proxy, _site) = site("").await;
    let with = |path: &'static str, v: String| if_range(&proxy, path, v);
    assert_eq!(with("/n.txt", tag()).await.status, 206);
    assert_eq!(with("/n.txt", "\"stale\"".into()).await.status, 200);
    assert_eq!(with("/n.txt", format!("W/{}", tag())).await.status, 200);
    assert_eq!(with("/n.txt", MTIME_TEXT.into()).await.status, 206);
    assert_eq!(
        with("/n.txt", "Sun, 13 Sep 2020 12:26:41 GMT".into())
            .await
            .status,
        200
    );
    let r = with("/n.txt", "garbage".into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("bytes"));
    // add_header Last-Modified replaces the time If-Range compares with;
    // an empty one leaves nothing to compare.
    let r = with("/stamped/n.txt", "Mon, 01 Jan 2001 01:01:01 GMT".into()).await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("Last-Modified").as_deref(),
        Some("Mon, 01 Jan 2001 01:01:01 GMT")
    );
    assert_eq!(with("/stamped/n.txt", MTIME_TEXT.into()).await.status, 200);
    let r = with("/unstamped/n.txt", MTIME_TEXT.into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Last-Modified"), None);
    assert_eq!(with("/retagged/n.txt", "\"mine\"".into()).await.status, 206);
    assert_eq!(with("/retagged/n.txt", tag()).await.status, 200);
}

#[tokio::test]
async fn ranges_head_requests() {
    let (proxy, _site) = site("").await;
    let r = ranged(&proxy, "HEAD", "/n.txt", "Range: bytes=10-19\r\n").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range").as_deref(), Some("bytes 10-19/80"));
    assert_eq!(r.header("Content-Length").as_deref(), Some("10"));
    assert_eq!(r.body, "");
    // The length a multipart GET would send.
    let get = get_range(&proxy, "/n.txt", "bytes=0-1,4-5").await;
    let head = ranged(&proxy, "HEAD", "/n.txt", "Range: bytes=0-1,4-5\r\n").await;
    assert_eq!(head.status, 206);
    assert_eq!(
        head.header("Content-Length"),
        Some(get.body.len().to_string())
    );
    assert_eq!(head.body, "");
    let r = ranged(&proxy, "HEAD", "/n.txt", "Range: bytes=100-\r\n").await;
    assert_eq!(r.status, 416);
}

#[tokio::test]
async fn ranges_max_ranges() {
    let (proxy, _site) = site("").await;
    assert_eq!(
        get_range(&proxy, "/two/n.txt", "bytes=0-0,2-2")
            .await
            .status,
        206
    );
    // An unsatisfiable one does not count.
    assert_eq!(
        get_range(&proxy, "/two/n.txt", "bytes=0-0,2-2,99-")
            .await
            .status,
        206
    );
    let r = get_range(&proxy, "/two/n.txt", "bytes=0-0,2-2,4-4").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("bytes"));
    // 0: no ranges, and none announced.
    let r = get_range(&proxy, "/none/n.txt", "bytes=0-0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Accept-Ranges"), None);
    assert_eq!(
        get_range(&proxy, "/none/n.txt", "bytes=500-").await.status,
        200
    );
}

#[tokio::test]
async fn ranges_not_from_compressed_or_generated_responses() {
    let (proxy, _site) = site("").await;
    let r = ranged(
        &proxy,
        "GET",
        "/packed/n.html",
        "Range: bytes=0-1\r\nAccept-Encoding: gzip\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding").as_deref(), Some("gzip"));
    assert_eq!(r.header("Accept-Ranges"), None);
    // Without gzip from the client, the same file serves the range.
    assert_eq!(
        get_range(&proxy, "/packed/n.html", "bytes=0-1")
            .await
            .status,
        206
    );
    let r = get_range(&proxy, "/text", "bytes=0-1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "generated text");
    assert_eq!(r.header("Accept-Ranges"), None);
}

#[tokio::test]
async fn ranges_of_proxied_responses_with_proxy_force_ranges() {
    let backend = Backend::with(|_| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 80\r\nETag: \"b1\"\r\nAccept-Ranges: none\r\nLast-Modified: {MTIME_TEXT}\r\nConnection: close\r\n\r\n{}",
            numbers()
        )
        .into_bytes()
    })
    .await;
    let (proxy, _site) = site(&format!(
        r#"location /plain/ {{ proxy_pass http://{b}; }}
           location /forced/ {{ proxy_pass http://{b}; proxy_force_ranges on; }}"#,
        b = backend.addr
    ))
    .await;
    // By default the backend's answer goes through whole, as it said.
    let r = get_range(&proxy, "/plain/x", "bytes=0-1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, numbers());
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("none"));
    // Forced: one range from the streamed body.
    let r = get_range(&proxy, "/forced/x", "bytes=20-29").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Range").as_deref(), Some("bytes 20-29/80"));
    assert_eq!(r.body, "1011121314");
    let r = get_range(&proxy, "/forced/x", "bytes=-3").await;
    assert_eq!(r.body, "839");
    // More than one range: the whole body, ranges announced by us.
    let r = get_range(&proxy, "/forced/x", "bytes=0-0,2-2").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, numbers());
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("bytes"));
    assert_eq!(r.head.matches("Accept-Ranges").count(), 1);
    assert_eq!(
        get_range(&proxy, "/forced/x", "bytes=80-").await.status,
        416
    );
    // If-Range compares with the backend's validators.
    let ask = |v: &str| if_range(&proxy, "/forced/x", v.to_string());
    assert_eq!(ask("\"b1\"").await.status, 206);
    assert_eq!(ask("\"b2\"").await.status, 200);
    assert_eq!(ask(MTIME_TEXT).await.status, 206);
}
