//! `limit_conn` and `limit_req` rules and their zones as loaded.

use std::sync::Arc;

use crate::config::template::Template;

/// A `limit_conn zone N` rule.
#[derive(Debug, Clone)]
pub struct LimitConn {
    /// The zone.
    pub zone: Arc<ConnZoneDef>,
    /// Most concurrent connections per key.
    pub max: u32,
}

/// A `limit_req zone=name burst=N delay=N` rule.
#[derive(Debug, Clone)]
pub struct LimitReq {
    /// The zone.
    pub zone: Arc<ReqZoneDef>,
    /// `burst`, in thousandths of a request.
    pub burst: u64,
    /// Excess served without delay (`delay=`, `nodelay`), in thousandths.
    pub delay: u64,
}

/// A `limit_req_zone key zone=name:size rate=R` definition.
#[derive(Debug)]
pub struct ReqZoneDef {
    /// Zone name.
    pub name: String,
    /// Key (requests with an empty key are not limited).
    pub key: Template,
    /// Rate in thousandths of a request per second.
    pub rate: u64,
    /// The buckets (shared by every generation that defines the zone).
    pub state: Arc<crate::limits::RateZone>,
}

/// A `limit_conn_zone key zone=name:size` definition.
#[derive(Debug)]
pub struct ConnZoneDef {
    /// Zone name.
    pub name: String,
    /// Key (requests with an empty key are not counted).
    pub key: Template,
    /// Zone size in bytes (bounds the number of distinct keys tracked).
    pub size: u64,
    /// The counts (shared by every generation that defines the zone).
    pub state: Arc<crate::limits::Zone>,
}
