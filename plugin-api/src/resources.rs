//! What backends offer and what nodes need.

use abi_stable::{
    StableAbi,
    std_types::{RString, RVec, Tuple2},
};
use std::ops::BitOr;

/// Amounts of compute a node asks for or a backend has.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub gpus: f64,
    /// Named resources (`licence`, `fpga`...) and amounts.
    pub custom: RVec<Tuple2<RString, f64>>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.cpus == 0.0 && self.memory_bytes == 0 && self.gpus == 0.0 && self.custom.is_empty()
    }

    pub fn custom_amount(&self, name: &str) -> f64 {
        self.custom.iter().find(|t| t.0 == name).map_or(0.0, |t| t.1)
    }
}

/// Boolean capabilities as bits; new capabilities are new bits, so the set
/// grows without changing any layout.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CapabilityFlags(pub u64);

impl CapabilityFlags {
    pub const NONE: Self = Self(0);
    /// Runs several tasks at once.
    pub const PARALLEL: Self = Self(1 << 0);
    /// Runs tasks away from the host (needs self-contained tasks).
    pub const REMOTE: Self = Self(1 << 1);
    /// Spreads tasks over several machines.
    pub const DISTRIBUTED: Self = Self(1 << 2);
    /// Can stream partial outputs.
    pub const STREAMING: Self = Self(1 << 3);
    /// Keeps outputs where they were produced and passes references.
    pub const BY_REFERENCE: Self = Self(1 << 4);
    /// Can call a node's in-process compute function.
    pub const IN_PROCESS_COMPUTE: Self = Self(1 << 5);

    /// Names of known bits, for display and config parsing.
    pub const NAMES: &'static [(&'static str, Self)] = &[
        ("parallel", Self::PARALLEL),
        ("remote", Self::REMOTE),
        ("distributed", Self::DISTRIBUTED),
        ("streaming", Self::STREAMING),
        ("by-reference", Self::BY_REFERENCE),
        ("in-process-compute", Self::IN_PROCESS_COMPUTE),
    ];

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Names of the set bits; unknown bits show as `bit<N>`.
    pub fn names(self) -> Vec<String> {
        (0..64)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| {
                Self::NAMES
                    .iter()
                    .find(|(_, f)| f.0 == 1 << bit)
                    .map_or_else(|| format!("bit{bit}"), |(n, _)| (*n).to_owned())
            })
            .collect()
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

impl BitOr for CapabilityFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// How strongly a backend separates a task from the host and from other tasks.
/// Ordered: a backend satisfies a node when its level is at least the node's.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Isolation(pub u8);

impl Isolation {
    /// Runs in the host's own process.
    pub const NONE: Self = Self(0);
    /// Runs in another process.
    pub const PROCESS: Self = Self(1);
    /// Runs in a container or VM.
    pub const SANDBOX: Self = Self(2);

    pub fn name(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::PROCESS => "process",
            Self::SANDBOX => "sandbox",
            _ => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::NONE, Self::PROCESS, Self::SANDBOX].into_iter().find(|i| i.name() == name)
    }
}

/// What a backend (factory or live instance) can do.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Capabilities {
    pub flags: CapabilityFlags,
    pub isolation: Isolation,
    /// Tasks it runs at once (0 = no stated limit).
    pub max_concurrency: u32,
    /// What one task may use at most.
    pub capacity: Resources,
    /// Free-form tags: `gpu`, `cuda12`, `arm64`...
    pub tags: RVec<RString>,
    /// Key/value attributes added in later 1.x versions.
    pub extensions: RVec<Tuple2<RString, RString>>,
}

/// What a node type needs from a backend.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Requirements {
    pub flags: CapabilityFlags,
    pub isolation: Isolation,
    pub resources: Resources,
    pub tags: RVec<RString>,
    /// Key/value attributes added in later 1.x versions.
    pub extensions: RVec<Tuple2<RString, RString>>,
}

#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthStatus(pub u8);

impl HealthStatus {
    pub const UP: Self = Self(0);
    pub const DEGRADED: Self = Self(1);
    pub const DOWN: Self = Self(2);

    pub fn name(self) -> &'static str {
        match self {
            Self::UP => "up",
            Self::DEGRADED => "degraded",
            Self::DOWN => "down",
            _ => "unknown",
        }
    }
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Health {
    pub status: HealthStatus,
    pub message: RString,
    /// Key/value attributes added in later 1.x versions.
    pub extensions: RVec<Tuple2<RString, RString>>,
}

impl Health {
    pub fn up() -> Self {
        Self::default()
    }
    /// Working, but worse than usual (fewer workers, a slow dependency); the
    /// host still sends it work.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self { status: HealthStatus::DEGRADED, message: message.into().into(), extensions: RVec::new() }
    }
    pub fn down(message: impl Into<String>) -> Self {
        Self { status: HealthStatus::DOWN, message: message.into().into(), extensions: RVec::new() }
    }
}

/// A size in bytes from `1048576`, `512MiB`, `1.5GB`... (decimal and binary
/// units, case-insensitive); `None` when it is not one.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    Some((number * factor) as u64)
}
