//! tunnels.yaml → `Vec<Tunnel>`. Moved to `config/values.rs` first, so history follows
//! the biggest piece; the next commit splits it by concern.

mod values;

pub use values::*;
