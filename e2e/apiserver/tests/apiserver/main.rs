//! Tests of the API stand-in, through the real kube client and the real kubectl.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod admission;
mod binary;
mod common;
mod deletion;
mod faults;
mod kubectl;
mod rest_api;
mod watch;
