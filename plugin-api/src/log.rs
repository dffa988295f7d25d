//! Plugin logs routed to the host.
//!
//! A dylib has its own copy of every static, so the host's `tracing`
//! subscriber is invisible inside a plugin. The host installs a [`LogSink`]
//! when it loads the plugin; the `log_*!` macros format a message only when
//! the host wants that level, or when a node is computing on this thread:
//! then lines up to [`CAPTURE_LEVEL`] also go to its task's log (the
//! compute context's `log`), which the host keeps per node and attempt.

use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RBox, RStr},
};
use std::{
    cell::Cell,
    sync::{
        OnceLock,
        atomic::{AtomicU8, Ordering},
    },
};

/// Severity, most severe first; `OFF` disables logging.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogLevel(pub u8);

impl LogLevel {
    pub const OFF: Self = Self(0);
    pub const ERROR: Self = Self(1);
    pub const WARN: Self = Self(2);
    pub const INFO: Self = Self(3);
    pub const DEBUG: Self = Self(4);
    pub const TRACE: Self = Self(5);
}

/// Host-implemented receiver of plugin log records.
#[sabi_trait]
pub trait LogSink: Send + Sync {
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
}

pub type LogSinkBox = LogSink_TO<'static, RBox<()>>;

static SINK: OnceLock<LogSinkBox> = OnceLock::new();
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Installs the host's sink in this image (the first install wins).
pub fn install(sink: LogSinkBox, max_level: LogLevel) {
    if SINK.set(sink).is_ok() {
        MAX_LEVEL.store(max_level.0, Ordering::Relaxed);
    }
}

/// In a plugin dylib (which has its own copy of std), report panics through
/// the host's log instead of printing to stderr; [`crate::guard`] turns them
/// into errors either way.
fn route_panics_to_host_log() {
    std::panic::set_hook(Box::new(|info| {
        if enabled(LogLevel::WARN) {
            emit(LogLevel::WARN, "panic", &format!("plugin code panicked: {info}"));
        }
    }));
}

/// What the root module's `install_log_sink` points at: only ever called by a
/// host on a loaded dylib, so replacing this image's panic hook is safe.
pub(crate) extern "C" fn install_extern(sink: LogSinkBox, max_level: LogLevel) {
    // Neither can panic: OnceLock::set and set_hook outside of a panic.
    install(sink, max_level);
    route_panics_to_host_log();
}

/// The most verbose level a task's own log keeps from the `log_*!` macros.
pub const CAPTURE_LEVEL: LogLevel = LogLevel::INFO;

/// Where this thread's log lines also go while a node computes on it.
type Capture<'a> = dyn Fn(LogLevel, &str) + 'a;

thread_local! {
    static CAPTURE: Cell<Option<*const Capture<'static>>> = const { Cell::new(None) };
}

/// Runs `f` with the lines this thread logs (up to [`CAPTURE_LEVEL`]) also
/// handed to `capture`.
pub(crate) fn capturing<R>(capture: &Capture<'_>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<*const Capture<'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.set(self.0));
        }
    }
    // SAFETY: only the lifetime is erased. The pointer is read only by
    // `emit` on this thread while `f` runs, and `Restore` takes it out again
    // before `capture`'s borrow ends, on return and on unwind alike.
    let erased = unsafe { std::mem::transmute::<*const Capture<'_>, *const Capture<'static>>(capture) };
    let _restore = Restore(CAPTURE.with(|c| c.replace(Some(erased))));
    f()
}

fn capturing_now() -> bool {
    CAPTURE.with(|c| c.get().is_some())
}

pub fn enabled(level: LogLevel) -> bool {
    level.0 <= MAX_LEVEL.load(Ordering::Relaxed) && level != LogLevel::OFF
}

/// Whether a line at `level` goes anywhere: to the host's log, or to the
/// log of the task computing on this thread.
pub fn wanted(level: LogLevel) -> bool {
    enabled(level) || (level <= CAPTURE_LEVEL && level != LogLevel::OFF && capturing_now())
}

pub fn emit(level: LogLevel, target: &str, message: &str) {
    if level <= CAPTURE_LEVEL && level != LogLevel::OFF {
        // SAFETY: see `capturing`; the pointer is live while it is set.
        CAPTURE.with(|c| c.get().map(|capture| unsafe { (*capture)(level, message) }));
    }
    if enabled(level)
        && let Some(sink) = SINK.get()
    {
        sink.log(level, target.into(), message.into());
    }
}

#[macro_export]
macro_rules! plugin_log {
    ($level:expr, $($arg:tt)+) => {
        if $crate::log::wanted($level) {
            $crate::log::emit($level, module_path!(), &format!($($arg)+));
        }
    };
}

#[macro_export]
macro_rules! log_error { ($($arg:tt)+) => { $crate::plugin_log!($crate::log::LogLevel::ERROR, $($arg)+) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)+) => { $crate::plugin_log!($crate::log::LogLevel::WARN, $($arg)+) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)+) => { $crate::plugin_log!($crate::log::LogLevel::INFO, $($arg)+) }; }
#[macro_export]
macro_rules! log_debug { ($($arg:tt)+) => { $crate::plugin_log!($crate::log::LogLevel::DEBUG, $($arg)+) }; }
#[macro_export]
macro_rules! log_trace { ($($arg:tt)+) => { $crate::plugin_log!($crate::log::LogLevel::TRACE, $($arg)+) }; }
