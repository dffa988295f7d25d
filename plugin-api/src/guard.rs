//! Keeps panics on the plugin side of the boundary.

use crate::error::{PluginError, PluginError_NE};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`, turning a panic into [`PluginError::Panicked`] with its message.
///
/// A panic that unwinds through an `extern "C"` function or a `sabi_trait`
/// method aborts the whole host process, so every plugin entry point and every
/// plugin-owned worker thread body goes through this.
pub fn guard<T>(f: impl FnOnce() -> Result<T, PluginError_NE>) -> Result<T, PluginError_NE> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(PluginError::panicked(panic_message(payload.as_ref()))),
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PluginError;

    #[test]
    fn panic_becomes_error_with_message() {
        let err = guard::<()>(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(err.as_enum().unwrap(), &PluginError::Panicked { message: "boom 7".into() });
    }

    #[test]
    fn ok_passes_through() {
        assert_eq!(guard(|| Ok(3)).unwrap(), 3);
    }
}
