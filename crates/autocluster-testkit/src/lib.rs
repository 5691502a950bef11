//! autocluster's test kit (work in progress).
