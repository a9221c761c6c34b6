//! Integration tests: one binary, the real exporter on 127.0.0.1:0 against real stub
//! servers on 127.0.0.1:0.

mod helpers;
mod postgres;
mod stub;
mod stub_ingest;

mod alerting;
mod bad_inputs;
mod binary;
mod canary;
mod config_errors;
mod doctor;
mod e2e;
mod extreme_configs;
mod heartbeat;
mod landing;
mod queue;
mod queue_postgres;
mod redirects;
mod reload;
mod scenarios;
mod scrape_mode;
mod secrets;
mod secrets_live;
mod server_abuse;
mod shipped_config;
mod tls;
mod web;
