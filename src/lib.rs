//! relance: a payment-reminder (dunning) engine.
//!
//! Data flows one way: [`feed`] reads invoices into the [`model`], the
//! [`engine`] decides with [`policy`] rules and [`script`]s which reminders are
//! due, [`render`] turns them into messages, and the [`journal`] remembers what
//! was sent. [`deliver`] sends emails and writes the [`tasks`] people act on
//! (letters as [`pdf`] too). [`project`] loads a whole relance folder; the
//! binary is a thin shell.

pub mod calendar;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod diagnostics;
pub mod engine;
pub mod feed;
pub mod journal;
pub mod model;
pub mod money;
pub mod pdf;
pub mod policy;
pub mod project;
pub mod render;
pub mod report;
pub mod script;
pub mod tasks;
