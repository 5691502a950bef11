//! autocluster's test kit: the behaviour suite every backend runs ([`suite`]), an in-memory
//! backend for the engine's own tests ([`memory`]), fixtures that start real servers on free
//! loopback ports ([`fixtures`]), and a nemesis that runs random faults against real agents
//! and checks their history ([`nemesis`]).
#![deny(missing_docs)]

pub mod fixtures;
pub mod memory;
pub mod nemesis;
pub mod suite;
