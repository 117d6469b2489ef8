//! Switchyard's `websocket_*` settings of a location.

use std::sync::Arc;
use std::time::Duration;

/// Switchyard's `websocket_*` settings of a location; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSocketConf {
    /// `websocket_ping_interval`.
    pub ping_interval: Option<Duration>,
    /// `websocket_pong_timeout` (default 10s).
    pub pong_timeout: Duration,
    /// `websocket_max_message_size`.
    pub max_message_size: Option<u64>,
    /// `websocket_max_frame_size`.
    pub max_frame_size: Option<u64>,
    /// `websocket_message_rate`.
    pub message_rate: Option<WsRate>,
    /// `websocket_allowed_origins`.
    pub allowed_origins: Option<Arc<Vec<OriginRule>>>,
    /// `websocket_drain_window`.
    pub drain_window: Option<Duration>,
}

impl WebSocketConf {
    /// Whether a tunnel must follow frames for these settings.
    pub fn needs_frames(&self) -> bool {
        self.ping_interval.is_some()
            || self.max_message_size.is_some()
            || self.max_frame_size.is_some()
            || self.message_rate.is_some()
            || self.drain_window.is_some()
    }

    /// Whether a handshake with `origin` (the `Origin` header, if any) may
    /// proceed; `own` is the request's scheme and host (`https://host`).
    pub fn origin_allowed(&self, origin: Option<&[u8]>, own: &str) -> bool {
        let Some(rules) = &self.allowed_origins else {
            return true;
        };
        let Some(origin) = origin.and_then(|o| std::str::from_utf8(o).ok()) else {
            return false;
        };
        let origin = origin.trim().to_ascii_lowercase();
        rules.iter().any(|r| match r {
            OriginRule::Exact(o) => *o == origin,
            OriginRule::Same => origin.eq_ignore_ascii_case(own),
            OriginRule::Subdomains(suffix) => origin.split_once("://").is_some_and(|(_, host)| {
                let host = host.rsplit_once(':').map_or(host, |(h, p)| {
                    if p.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        host
                    }
                });
                host.ends_with(suffix.as_str()) && host.len() > suffix.len()
            }),
        })
    }
}

/// A message rate (`websocket_message_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsRate {
    /// Thousandths of a message per second.
    pub per_sec_milli: u64,
    /// Messages tolerated above the rate.
    pub burst: u64,
}

/// One entry of `websocket_allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// `scheme://host[:port]`, lowercased.
    Exact(String),
    /// `*.example.com`: kept as `.example.com`.
    Subdomains(String),
    /// `same`: the request's own scheme and host.
    Same,
}
