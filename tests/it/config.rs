//! Configuration loading: nginx's error messages and `in FILE:LINE`,
//! includes, and what is refused.

use crate::harness::TempDir;

fn load(text: &str) -> Result<switchyard::config::Config, String> {
    let dir = TempDir::new();
    let r = switchyard::config::load_str(text, dir.path()).map_err(|e| e.to_string());
    // Messages name the file; make them independent of the temp dir.
    r.map_err(|e| e.replace(&dir.path().display().to_string(), "DIR"))
}

fn err(text: &str) -> String {
    load(text).expect_err("configuration should be refused")
}

#[test]
fn config_error_messages_use_nginx_vocabulary() {
    assert_eq!(
        err(
            "events {}\nhttp {\n  server {\n    location / {\n      proxy_pas http://x;\n    }\n  }\n}\n"
        ),
        "unknown directive \"proxy_pas\" in DIR/switchyard.conf:5"
    );
    assert_eq!(
        err("events {}\nhttp {\n  proxy_pass http://127.0.0.1:1;\n}\n"),
        "\"proxy_pass\" directive is not allowed here in DIR/switchyard.conf:3"
    );
    assert_eq!(
        err("events {}\nhttp { server { location / { proxy_read_timeout; } } }\n"),
        "invalid number of arguments in \"proxy_read_timeout\" directive in DIR/switchyard.conf:2"
    );
    assert_eq!(
        err(
            "events {}\nhttp { server { location / {\nproxy_read_timeout 1s;\nproxy_read_timeout 2s;\n} } }\n"
        ),
        "\"proxy_read_timeout\" directive is duplicate in DIR/switchyard.conf:4"
    );
    assert_eq!(
        err("events {}\nhttp { proxy_read_timeout 1x; }\n"),
        "\"proxy_read_timeout\" directive invalid value \"1x\" in DIR/switchyard.conf:2"
    );
    assert_eq!(
        err("events {}\nhttp {\n"),
        "unexpected end of file, expecting \"}\" in DIR/switchyard.conf:3"
    );
    assert_eq!(
        err("events {}\n}\n"),
        "unexpected \"}\" in DIR/switchyard.conf:2"
    );
    assert_eq!(
        err("daemon off\n"),
        "unexpected end of file, expecting \";\" or \"}\" in DIR/switchyard.conf:2"
    );
    assert_eq!(
        err("daemon maybe;\n"),
        "invalid value \"maybe\" in \"daemon\" directive, it must be \"on\" or \"off\" in DIR/switchyard.conf:1"
    );
    assert_eq!(
        err("http;\n"),
        "directive \"http\" has no opening \"{\" in DIR/switchyard.conf:1"
    );
    assert_eq!(
        err("daemon off { }\n"),
        "directive \"daemon\" is not terminated by \";\" in DIR/switchyard.conf:1"
    );
}

#[test]
fn config_refuses_unimplemented_security_directives() {
    let e = err("events {}\nhttp { server { location / { secure_link $arg_md5; } } }\n");
    assert_eq!(
        e,
        "unknown directive \"secure_link\" (ngx_http_secure_link_module is not implemented by switchyard) in DIR/switchyard.conf:2"
    );
    let e = err("events {}\nhttp { server { location / { proxy_cache zone; } } }\n");
    assert!(e.contains("\"proxy_cache\" is not supported"), "{e}");
}

#[test]
fn config_ignored_directives_load_with_warnings() {
    let c = load("events { use epoll; }\nhttp { sendfile on; tcp_nopush on; }\n").unwrap();
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[1].contains("\"sendfile\" directive is accepted but has no effect"));
}

#[test]
fn config_unknown_variables_and_upstreams_are_errors() {
    let e = err(
        "events {}\nhttp { server { location / {\n proxy_set_header X $nope;\n proxy_pass http://127.0.0.1:1; } } }\n",
    );
    assert_eq!(e, "unknown \"nope\" variable in DIR/switchyard.conf:3");
    let e = err(
        "events {}\nhttp { server { location / { proxy_pass http://no-such-upstream.invalid; } } }\n",
    );
    assert!(
        e.starts_with("host not found in upstream \"no-such-upstream.invalid\""),
        "{e}"
    );
    let e =
        err("events {}\nhttp { server { location ~ ^/x { proxy_pass http://127.0.0.1:1/y; } } }\n");
    assert!(
        e.contains("cannot have URI part in location given by regular expression"),
        "{e}"
    );
}

#[test]
fn config_includes_globs_relative_to_the_main_file() {
    let dir = TempDir::new();
    dir.write(
        "conf.d/a.conf",
        "server { listen 127.0.0.1:0; server_name a; }\n",
    );
    dir.write(
        "conf.d/b.conf",
        "server { listen 127.0.0.1:0; server_name b; }\n",
    );
    dir.write("main.conf", "events {}\nhttp { include conf.d/*.conf; }\n");
    let c = switchyard::config::load(&switchyard::config::LoadOptions::new(
        dir.path(),
        dir.path().join("main.conf"),
    ))
    .unwrap();
    let http = c.http.unwrap();
    let names: Vec<&str> = http.servers.iter().map(|s| s.primary_name()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(c.files.len(), 3);
    dir.write("bad.conf", "events {}\nhttp { include missing.conf; }\n");
    let e = switchyard::config::load(&switchyard::config::LoadOptions::new(
        dir.path(),
        dir.path().join("bad.conf"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("missing.conf\" failed (2: No such file or directory)"),
        "{e}"
    );
}

#[test]
fn config_listen_and_server_name_errors() {
    let e = err("events {}\nhttp { server { listen 127.0.0.1:99999; } }\n");
    assert!(e.starts_with("invalid port in \"127.0.0.1:99999\""), "{e}");
    let e = err(
        "events {}\nhttp { server { listen 127.0.0.1:8080 default_server; } server { listen 127.0.0.1:8080 default_server; } }\n",
    );
    assert!(
        e.starts_with("a duplicate default server for 127.0.0.1:8080"),
        "{e}"
    );
    let e = err("events {}\nhttp { server { listen 8080 ssl; } }\n");
    assert!(
        e.starts_with("no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive"),
        "{e}"
    );
    let e = err("events {}\nhttp { server { server_name a*b; } }\n");
    assert!(
        e.starts_with("invalid server name or wildcard \"a*b\""),
        "{e}"
    );
}

#[test]
fn config_map_errors() {
    let e = err("events {}\nhttp { map $a x { default 1; } }\n");
    assert!(e.starts_with("invalid variable name \"x\""), "{e}");
    let e = err("events {}\nhttp { map $a $b { k 1 2; } }\n");
    assert!(e.starts_with("invalid number of the map parameters"), "{e}");
    let e = err("events {}\nhttp { map $a $b { ~( x; } }\n");
    assert!(e.contains("is not a valid regex"), "{e}");
    let e = err("events {}\nhttp { map $a $host { default 1; } }\n");
    assert!(e.starts_with("the duplicate \"host\" variable"), "{e}");
}

#[test]
fn config_params_from_the_command_line() {
    let dir = TempDir::new();
    dir.write("m.conf", "events {}\n");
    let mut opts = switchyard::config::LoadOptions::new(dir.path(), dir.path().join("m.conf"));
    opts.params = Some("daemon off; worker_processes 3;".into());
    let c = switchyard::config::load(&opts).unwrap();
    assert!(!c.main.daemon);
    assert_eq!(c.main.worker_processes, 3);
    opts.params = Some("daemon off".into());
    let e = switchyard::config::load(&opts).unwrap_err().to_string();
    assert_eq!(
        e,
        "unexpected end of parameter, expecting \";\" in command line"
    );
}
