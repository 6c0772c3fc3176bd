//! Ferry's integration tests, as one test binary.
//!
//! Each file is a suite (a module here); `cargo test --test it <suite>::` runs one, e.g.
//! `cargo test --test it chart::`. One binary links once: 28 binaries of this dependency set
//! took ~7 GB of disk and a link each, and CI's disk ran out while linking them.

mod common;
mod psa_common;

mod alerts;
mod architecture;
mod bad_inputs;
mod chart;
mod check;
mod cli;
mod controller;
mod deliver_crash;
mod deliver_e2e;
mod deliver_email;
mod deliver_exactly_once;
mod deliver_ftp;
mod deliver_object_store;
mod deliver_sftp;
mod failover;
mod fault_proxy;
mod first_hour;
mod formats_csv_xlsx;
mod formats_pdf;
mod hosted_sftp;
mod hosted_sftp_abuse;
mod hosted_sftp_run;
mod job_executor;
mod limits;
mod partitioned;
mod plan_cluster;
mod psa_contract;
mod psa_reports;
mod psa_sync;
mod psa_vendor;
mod runs;
mod secrets_in_logs;
mod sources;
mod sources_mariadb;
mod ssh_cli;
mod state_postgres;
mod validation;
