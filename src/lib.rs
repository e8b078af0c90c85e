//! relance: a payment-reminder (dunning) engine.
//!
//! Data flows one way: [`feed`] reads invoices into the [`model`], the
//! [`engine`] decides with the [`rules`] (policies, holds, Rhai scripts)
//! which reminders are due, [`render`] turns them into messages,
//! [`deliver`] sends them and the [`journal`] remembers what was sent.
//! [`project`] loads a whole relance folder, [`daemon`] runs the passes and
//! [`report`] shows the results; the binary is a thin shell.
//! ARCHITECTURE.md at the repository's root is the map.

pub mod calendar;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod diagnostics;
pub mod engine;
pub mod feed;
pub mod journal;
pub mod locale;
pub mod model;
pub mod money;
pub mod project;
pub mod render;
pub mod report;
pub mod rules;
pub mod text;
