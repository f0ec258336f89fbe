//! jetwork's frontend: a [`Client`] that submits work, reads results and manages jobs
//! (`jobs.rs`: job, cancel, retry, pause, resume, schedules), the seed's demo producer ([`demo`]), the
//! refreshing status view ([`watch`]), the web [`dashboard`], the failures both read
//! ([`results_feed`]), and (in `main.rs`) the
//! `jetwork-frontend` command line.

mod client;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod job_view;
mod jobs;
pub mod no_leader;
pub mod results_feed;
pub mod schedule_view;
pub mod status_view;
pub mod submit_options;
pub mod watch;

pub use client::{Client, ClientError, ResultStatus, Submitted, WorkResult};
pub use config::{FrontendConfig, FrontendSettings};
pub use jobs::JobsError;
