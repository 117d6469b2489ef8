//! `switchyard client URL`: an interactive WebSocket client. Lines from
//! stdin become text (or binary) messages, received messages go to stdout
//! one per line; end of input closes the WebSocket. Usable in scripts:
//! `echo hello | switchyard client ws://host/ws` prints the reply.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{Options, Report, Target, connect};

/// What the client was asked to do.
#[derive(Clone, Debug, Default)]
struct Args {
    url: String,
    probe: Options,
    subprotocols: Vec<String>,
    binary: bool,
    ping_interval: Option<Duration>,
    /// Wait this long for replies after stdin ends, then close.
    linger: Duration,
}

const USAGE: &str =
    "usage: switchyard client URL [--header 'Name: value']... [--subprotocol P]... [--origin O]
                         [--insecure] [--binary] [--ping-interval DURATION] [--wait DURATION]
       lines from stdin are sent as messages (binary with --binary); received messages are
       printed one per line (binary ones in hex); end of input closes after --wait (default 1s)
";

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        probe: Options {
            timeout: Duration::from_secs(10),
            ..Options::default()
        },
        linger: Duration::from_secs(1),
        ..Args::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let time = |v: String| {
            crate::config::values::parse_time(&v).ok_or_else(|| format!("invalid duration \"{v}\""))
        };
        match a.as_str() {
            "--header" | "-H" => out.probe.headers.push(value()?),
            "--subprotocol" => out.subprotocols.push(value()?),
            "--origin" => out.probe.origin = Some(value()?),
            "--insecure" | "-k" => out.probe.insecure = true,
            "--binary" => out.binary = true,
            "--ping-interval" => out.ping_interval = Some(time(value()?)?),
            "--wait" => out.linger = time(value()?)?,
            "-h" | "--help" => return Err(String::new()),
            u if out.url.is_empty() && !u.starts_with('-') => out.url = u.to_string(),
            other => return Err(format!("unknown argument \"{other}\"")),
        }
    }
    if out.url.is_empty() {
        return Err("a URL is needed".into());
    }
    Ok(out)
}

fn print_message(m: &Message) -> bool {
    let mut stdout = std::io::stdout().lock();
    let ok = match m {
        Message::Text(t) => writeln!(stdout, "{t}"),
        Message::Binary(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            writeln!(stdout, "{hex}")
        }
        _ => Ok(()),
    };
    ok.and_then(|_| stdout.flush()).is_ok()
}

async fn run(args: Args) -> Result<(), String> {
    let target = Target::parse(&args.url)?;
    let mut report = Report {
        url: args.url.clone(),
        steps: Vec::new(),
        diagnosis: String::new(),
        works: false,
    };
    let conn = connect(&target, &args.probe, &mut report)
        .await
        .map_err(|f| format!("cannot connect: {f:?}"))?;
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    // The URL's scheme decides TLS; tungstenite checks ws/wss only.
    *request.uri_mut() = format!("ws://{}{}", target.authority(), target.path)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let headers = request.headers_mut();
    let mut extra: Vec<String> = args.probe.headers.clone();
    if let Some(o) = &args.probe.origin {
        extra.push(format!("Origin: {o}"));
    }
    if !args.subprotocols.is_empty() {
        extra.push(format!(
            "Sec-WebSocket-Protocol: {}",
            args.subprotocols.join(", ")
        ));
    }
    for h in extra {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header \"{h}\" is not \"Name: value\""))?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?,
            http::HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?,
        );
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = None;
    config.max_frame_size = None;
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(request, conn.io, Some(config))
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
    if let Some(p) = response.headers().get("sec-websocket-protocol") {
        eprintln!(
            "switchyard client: subprotocol {}",
            p.to_str().unwrap_or("?")
        );
    }
    let (mut sink, mut stream) = ws.split();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut ping = args.ping_interval.map(tokio::time::interval);
    let mut input_done = false;
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            line = lines.next_line(), if !input_done => match line {
                Ok(Some(l)) => {
                    let msg = if args.binary { Message::Binary(l.into_bytes().into()) } else { Message::Text(l.into()) };
                    sink.send(msg).await.map_err(|e| e.to_string())?;
                }
                _ => {
                    input_done = true;
                    linger.as_mut().reset(tokio::time::Instant::now() + args.linger);
                }
            },
            _ = &mut linger => {
                let _ = sink.send(Message::Close(None)).await;
                // Give the close handshake a moment, then leave.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(m)) = stream.next().await {
                        if !print_message(&m) || m.is_close() { break; }
                    }
                }).await;
                return Ok(());
            }
            _ = async { match ping.as_mut() { Some(p) => { p.tick().await; } None => std::future::pending::<()>().await } } => {
                sink.send(Message::Ping(Vec::new().into())).await.map_err(|e| e.to_string())?;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(frame))) => {
                    if let Some(f) = frame {
                        eprintln!("switchyard client: closed by the server: {} {}", u16::from(f.code), f.reason);
                    }
                    return Ok(());
                }
                Some(Ok(m)) => if !print_message(&m) { return Ok(()) },
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection closed without a close frame".into()),
            },
        }
    }
}

/// Runs `switchyard client ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("switchyard client: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard client: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard client: {e}");
            ExitCode::from(1)
        }
    }
}
