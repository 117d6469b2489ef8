//! Proxying to backends: forwarding requests, upgrades, and the relay.

pub mod relay;
