//! The root module every plugin exports, and the macro that exports it.

use crate::{
    backend::BackendFactoryRef,
    error::PluginResult,
    log::{LogLevel, LogSinkBox},
    node::NodeSpecRef,
};
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RStr, RVec},
};

/// The `plugin-api` version this copy of the crate is (and a plugin was built against).
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin dylib exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
pub struct PluginMod {
    /// The `plugin-api` version the plugin was built against.
    pub interface_version: RStr<'static>,
    /// The plugin's own name and version (its crate's, by default).
    pub name: RStr<'static>,
    pub version: RStr<'static>,
    /// Whether the plugin was built with `panic = "unwind"`. With "abort", a
    /// panic in it would kill the host before any guard could catch it, so
    /// the host refuses such plugins.
    pub panic_unwinds: bool,
    pub install_log_sink: extern "C" fn(LogSinkBox, LogLevel),
    pub backend_factories: extern "C" fn() -> PluginResult<RVec<BackendFactoryRef>>,
    #[sabi(last_prefix_field)]
    pub node_specs: extern "C" fn() -> PluginResult<RVec<NodeSpecRef>>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "backplane_plugin";
    const NAME: &'static str = "backplane_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Used by [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub fn build_root_module(
    name: &'static str,
    version: &'static str,
    panic_unwinds: bool,
    backend_factories: extern "C" fn() -> PluginResult<RVec<BackendFactoryRef>>,
    node_specs: extern "C" fn() -> PluginResult<RVec<NodeSpecRef>>,
) -> PluginModRef {
    PluginMod {
        interface_version: RStr::from_str(INTERFACE_VERSION),
        name: RStr::from_str(name),
        version: RStr::from_str(version),
        panic_unwinds,
        install_log_sink: crate::log::install_extern,
        backend_factories,
        node_specs,
    }
    .leak_into_prefix()
}

/// Exports a plugin's root module.
///
/// ```
/// use backplane_plugin_api::{prelude::*, serde_json::json, testing::call_node};
///
/// /// `acme.upper`: uppercases its text.
/// pub struct Upper;
///
/// impl NodeType for Upper {
///     const TYPE_NAME: &'static str = "acme.upper";
///     const VERSION: &'static str = "0.1.0";
///     const DESCRIPTION: &'static str = "Uppercases its text";
///     type Settings = NoSettings;
///
///     fn inputs() -> Vec<PortSpec> { vec![PortSpec::text("text")] }
///     fn outputs() -> Vec<PortSpec> { vec![PortSpec::text("text")] }
///     fn compute(_: NoSettings, mut inputs: Inputs, _: &Context<'_>) -> Result<Vec<Payload>, NodeError> {
///         Ok(vec![Payload::text("text", inputs.text("text")?.to_uppercase())])
///     }
/// }
///
/// // Every backend and node type of the plugin, listed once.
/// backplane_plugin_api::export_plugin! { backends: [], nodes: [Upper] }
///
/// # fn main() {
/// let outputs = call_node::<Upper>(json!({}), vec![Payload::text("text", "hi".into())], "/").unwrap();
/// assert_eq!(outputs[0].as_text().unwrap(), "HI");
/// # }
/// ```
/// The plugin's name and version default to its crate's; override with
/// `name: "...", version: "...",` before `backends`.
#[macro_export]
macro_rules! export_plugin {
    (backends: [$($backend:ty),* $(,)?], nodes: [$($node:ty),* $(,)?] $(,)?) => {
        $crate::export_plugin! {
            name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION"),
            backends: [$($backend),*], nodes: [$($node),*],
        }
    };
    (name: $name:expr, version: $version:expr,
     backends: [$($backend:ty),* $(,)?], nodes: [$($node:ty),* $(,)?] $(,)?) => {
        extern "C" fn __backplane_backend_factories()
            -> $crate::error::PluginResult<$crate::abi_stable::std_types::RVec<$crate::BackendFactoryRef>> {
            $crate::guard(|| Ok(vec![$($crate::backend_factory::<$backend>()),*].into())).into()
        }
        extern "C" fn __backplane_node_specs()
            -> $crate::error::PluginResult<$crate::abi_stable::std_types::RVec<$crate::NodeSpecRef>> {
            $crate::guard(|| Ok(vec![$($crate::node_spec::<$node>()),*].into())).into()
        }
        fn __backplane_root_module() -> $crate::PluginModRef {
            $crate::module::build_root_module(
                $name,
                $version,
                cfg!(panic = "unwind"),
                __backplane_backend_factories,
                __backplane_node_specs,
            )
        }
        /// The abi_stable library header (what `#[export_root_module]` generates).
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(__backplane_root_module)
            }
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::PluginModRef>(
                    erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_symbol_name_matches_abi_stable() {
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }
}
