//! The integration tests, as one binary (one link, not one per file): real HTTP against the
//! running router, a fresh PostgreSQL database per test cloned from a migrated template, real
//! nats-server processes, the real binary where a process boundary matters.

mod common;

mod bad_requests;
mod client_tools;
mod credentials;
mod deadlines;
mod docs_page;
mod group_commit;
mod host_controls;
mod hot_rooms;
mod jwks;
mod live;
mod names;
mod openapi;
mod operations;
mod participants;
mod rate_limits;
mod relay;
mod relay_cluster;
mod relay_faults;
mod replay;
mod resilience;
mod rooms_api;
mod rooms_lifecycle;
mod shutdown;
mod slow_clients;
mod token_claims;
