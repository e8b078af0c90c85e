//! What a finance manager writes in `rules/`: escalation policies, holds, and the Rhai sandbox their expressions run in.

pub mod holds;
pub mod native;
pub mod policy;
pub mod script;

pub use holds::*;
pub use policy::*;
pub use script::*;
