//! The `autocluster` command (work in progress).
fn main() {}
