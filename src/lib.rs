//! NeuronMeet rooms service: an event-sourced rooms API on PostgreSQL.

/// The error of operations that only report (the CLI, the relay, replay, tail).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub mod app;
pub mod auth;
pub mod cli;
pub mod codes;
pub mod commands;
pub mod db;
pub mod deadline;
pub mod event_log;
pub mod event_store;
pub mod group_commit;
pub mod http;
pub mod idempotency;
pub mod jwks;
pub mod live;
pub mod read_models;
pub mod relay;
pub mod replay;
pub mod room_batches;
pub mod sql;
pub mod tail;
pub mod telemetry;
pub mod write_connections;
