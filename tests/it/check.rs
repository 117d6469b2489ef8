//! `switchyard check` against the corpus in tests/check: every file's
//! findings (text and JSON) match the expected output beside it, every
//! rule is exercised by at least two broken configurations, clean
//! configurations (the seeds' complete ones among them) give no warning,
//! and the exit codes, `--explain`, SARIF and `-t` behave as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::TempDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("run switchyard")
}

/// The corpus files, with the options on their first line.
fn corpus() -> Vec<(PathBuf, Vec<String>)> {
    let mut out: Vec<(PathBuf, Vec<String>)> =
        std::fs::read_dir(Path::new(ROOT).join("tests/check"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                let args = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# check: "))
                    .map(|a| a.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                (p, args)
            })
            .collect();
    out.sort();
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(ROOT).unwrap().display().to_string()
}

fn check_output(file: &Path, args: &[String], json: bool) -> String {
    let rel = relative(file);
    let mut argv: Vec<&str> = vec!["check", "-p", "."];
    argv.extend(args.iter().map(String::as_str));
    if json {
        argv.extend(["--format", "json"]);
    }
    argv.extend(["-c", &rel]);
    let out = switchyard(&argv);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_corpus_matches_the_expected_findings() {
    let mut stale = Vec::new();
    for (file, args) in corpus() {
        for (json, ext) in [(false, "txt"), (true, "json")] {
            let expected_path = file.with_extension(ext);
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            let got = check_output(&file, &args, json);
            if got != expected {
                stale.push(format!(
                    "{}:\n--- expected\n{expected}\n--- got\n{got}",
                    relative(&expected_path)
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "check output differs from the expected files (if the change is intended, run tests/check/regenerate.sh and review the diff):\n{}",
        stale.join("\n")
    );
}

#[test]
fn check_every_rule_has_two_broken_configurations() {
    let files = corpus();
    for rule in switchyard::check::rules::RULES {
        // SY000 is a load failure, SY019 needs live backends (tested
        // below), SY903 comes with every conf.d-style file.
        if matches!(rule.code, "SY000" | "SY019" | "SY903") {
            continue;
        }
        let prefix = rule.code.to_ascii_lowercase();
        let cases: Vec<&PathBuf> = files
            .iter()
            .map(|(p, _)| p)
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{prefix}-"))
            })
            .collect();
        assert!(
            cases.len() >= 2,
            "{} has {} corpus file(s), two are needed",
            rule.code,
            cases.len()
        );
        for case in cases {
            let text = std::fs::read_to_string(case.with_extension("txt")).unwrap();
            assert!(
                text.contains(&format!("[{}]", rule.code)),
                "{} does not report {}:\n{text}",
                relative(case),
                rule.code
            );
        }
    }
}

#[test]
fn check_clean_configurations_give_no_warning() {
    let clean: Vec<_> = corpus()
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("clean-")
        })
        .collect();
    assert!(
        clean.len() >= 3,
        "both seeds' complete configurations and one more"
    );
    for (file, args) in clean {
        let text = check_output(&file, &args, false);
        assert!(
            text.ends_with("0 error(s), 0 warning(s), 0 note(s)\n")
                || text.contains("\n0 error(s), 0 warning(s), "),
            "{} is not clean:\n{text}",
            relative(&file)
        );
    }
}

#[test]
fn check_exit_codes_follow_the_severities() {
    let run = |args: &[&str]| switchyard(args).status.code();
    // Errors: 1.
    assert_eq!(
        run(&[
            "check",
            "-p",
            ".",
            "--nginx",
            "-c",
            "tests/check/sy018-socket-io-round-robin.conf"
        ]),
        Some(1)
    );
    // Warnings only: 0, or 1 with --strict.
    let warn = "tests/check/sy003-inherited-short-timeout.conf";
    assert_eq!(run(&["check", "-p", ".", "-c", warn]), Some(0));
    assert_eq!(run(&["check", "-p", ".", "--strict", "-c", warn]), Some(1));
    // Clean: 0 even with --strict.
    assert_eq!(
        run(&[
            "check",
            "-p",
            ".",
            "--strict",
            "--nginx",
            "-c",
            "tests/check/clean-production.conf"
        ]),
        Some(0)
    );
    // Unreadable or invalid: 2, with the reason.
    let missing = switchyard(&["check", "-c", "tests/check/no-such-file.conf"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("open() \"tests/check/no-such-file.conf\" failed"),
        "{missing:?}"
    );
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.conf",
        "events {}\nhttp { server { listen 8080; location / { proxy_pass; } } }\n",
    );
    let invalid = switchyard(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&invalid.stderr)
            .contains("error[SY000]: invalid number of arguments in \"proxy_pass\" directive"),
        "{invalid:?}"
    );
}

#[test]
fn check_text_has_no_colour_when_not_a_terminal() {
    let text = check_output(
        &Path::new(ROOT).join("tests/check/sy002-literal-upgrade-on-root.conf"),
        &[],
        false,
    );
    assert!(text.contains("warning[SY002]"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn check_explain_prints_the_long_explanation() {
    let out = switchyard(&["check", "--explain", "SY003"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("SY003: idle WebSockets are cut"), "{text}");
    assert!(text.contains("proxy_read_timeout"), "{text}");
    let unknown = switchyard(&["check", "--explain", "SY999"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn check_sarif_lists_the_same_findings_as_json() {
    let file = "tests/check/sy101-nested-header-drops-upgrade.conf";
    let json: serde_json::Value = serde_json::from_slice(
        &switchyard(&[
            "check", "-p", ".", "--nginx", "--format", "json", "-c", file,
        ])
        .stdout,
    )
    .unwrap();
    let sarif: serde_json::Value = serde_json::from_slice(
        &switchyard(&[
            "check", "-p", ".", "--nginx", "--format", "sarif", "-c", file,
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "switchyard");
    let results = run["results"].as_array().unwrap();
    let findings = json.as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    assert!(!results.is_empty());
    let rule_ids: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for (r, f) in results.iter().zip(findings) {
        assert_eq!(r["ruleId"], f["code"]);
        assert!(rule_ids.contains(&r["ruleId"].as_str().unwrap()));
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["startLine"], f["line"]);
        assert_eq!(region["startColumn"], f["column"]);
        let level = match f["severity"].as_str().unwrap() {
            "info" => "note",
            other => other,
        };
        assert_eq!(r["level"], level);
    }
    assert!(
        results
            .iter()
            .any(|r| r["ruleId"] == "SY101" && r["level"] == "error")
    );
}

#[test]
fn check_dash_t_also_prints_the_warnings() {
    let dir = TempDir::new();
    let conf = dir.write(
        "ws.conf",
        "error_log stderr;\nevents {}\nhttp {\n    access_log off;\n    server {\n        listen 127.0.0.1:8080;\n        location /ws {\n            proxy_pass http://127.0.0.1:9000;\n            proxy_read_timeout 10s;\n        }\n    }\n}\n",
    );
    let out = switchyard(&[
        "-t",
        "-p",
        dir.path().to_str().unwrap(),
        "-c",
        conf.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("[warn] WebSockets through location /ws are closed after 10 s without traffic (proxy_read_timeout)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("[SY003] in {}:9", conf.display())),
        "{err}"
    );
    assert!(err.contains("test is successful"), "{err}");
    // Notes stay out of -t.
    assert!(!err.contains("SY105"), "{err}");
}

#[tokio::test]
async fn check_probe_backends_finds_the_one_that_is_not_a_websocket_server() {
    let (ws_backend, _) = crate::harness::ws_echo().await;
    let plain = crate::harness::Backend::with(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()
    })
    .await;
    let dir = TempDir::new();
    let conf = dir.write(
        "ws.conf",
        format!(
            "events {{}}\nhttp {{\n    upstream app {{ ip_hash; server {ws_backend}; server {}; }}\n    server {{\n        listen 8080;\n        location /ws {{ proxy_pass http://app; proxy_read_timeout 1h; }}\n    }}\n}}\n",
            plain.addr
        ),
    );
    let conf = conf.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        switchyard(&["check", "--probe-backends", "--format", "json", "-c", &conf])
    })
    .await
    .unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probed: Vec<&serde_json::Value> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "SY019")
        .collect();
    assert_eq!(probed.len(), 1, "{findings:#}");
    let message = probed[0]["message"].as_str().unwrap();
    assert!(message.contains(&plain.addr.to_string()), "{message}");
    assert!(
        message.contains("answered \"HTTP/1.1 200 OK\""),
        "{message}"
    );
    assert_eq!(out.status.code(), Some(1));
}
