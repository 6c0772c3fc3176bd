//! The pipeline every command and the controller run: *desired* (load the files or take the
//! cluster's objects, validate, reduce secrets to keyed digests) -> *plan* (the pure diff in
//! [`crate::plan`]) -> *apply* (the one apply: state writes, generated hosted SFTP passwords,
//! PSA releases on delete, the commit with its stale-state check). The CLI and the controller
//! differ only in where desired and actual state come from and how they show the result.

pub mod apply;
pub mod desired;
pub mod status;
