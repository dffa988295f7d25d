//! The loader's layers, checked by the host library's layering test (the
//! same file, reading this crate's `src/lib.rs` and `Cargo.toml`).

#[path = "../../tests/layering.rs"]
mod layering;
