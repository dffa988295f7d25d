//! What the fuzz targets share: bytes read as a user file is, and a host
//! with the standard node types and one instance of a planning-only backend,
//! built once. (The `local` plugin's rlib cannot be linked beside the std
//! nodes': each defines the plugin's root-module symbol.)

use backplane_host::{
    Host,
    config::Config,
    diagnostic::{ReadError, SourceFile},
    registry::Origin,
};
use backplane_plugin_api::{backend_factory, node_spec, prelude::*};
use backplane_std_nodes::{counts, io, misc, shell, text};
use std::sync::OnceLock;

/// `data` as the host reads a file named `name` (size limit, UTF-8).
pub fn source(name: &str, data: &[u8]) -> Result<SourceFile, ReadError> {
    SourceFile::from_bytes(name, data.to_vec(), backplane_host::diagnostic::DEFAULT_MAX_FILE_BYTES)
}

/// A host with every standard node type and a one-thread `local` instance.
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut host = Host::new();
        let origin = Origin { plugin: "backplane-std-nodes".into(), path: None };
        let specs = [
            node_spec::<io::ReadFiles>(),
            node_spec::<io::WriteFile>(),
            node_spec::<text::Lines>(),
            node_spec::<text::Chunk>(),
            node_spec::<text::RegexFilter>(),
            node_spec::<text::RegexReplace>(),
            node_spec::<text::Tokenize>(),
            node_spec::<text::Concat>(),
            node_spec::<text::Sort>(),
            node_spec::<text::Head>(),
            node_spec::<counts::WordCount>(),
            node_spec::<counts::MergeCounts>(),
            node_spec::<counts::LineCount>(),
            node_spec::<misc::Hash>(),
            node_spec::<shell::Shell>(),
            node_spec::<misc::Const>(),
            node_spec::<misc::Noop>(),
            node_spec::<misc::Sleep>(),
            node_spec::<misc::Fail>(),
            node_spec::<misc::Panic>(),
        ];
        for spec in specs {
            host.register_node_type(spec, origin.clone());
        }
        let planner = Origin { plugin: "backplane-fuzz".into(), path: None };
        host.register_backend_factory(backend_factory::<PlanOnly>(), planner);
        let config = Config::parse(SourceFile::new("fuzz.toml", "[backends.local]\ntype = \"plan-only\"\n".into()))
            .expect("the fuzz config is valid");
        config.instantiate(&mut host.backends).expect("the planning backend starts");
        host
    })
}

/// A backend that can be planned onto like `local` but is never run: the
/// targets plan, they do not execute.
struct PlanOnly;

impl BackendPlugin for PlanOnly {
    const NAME: &'static str = "plan-only";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Accepts every node at plan time; fails any task submitted";
    type Config = serde_json::Value;

    fn capabilities() -> Capabilities {
        Capabilities { flags: CapabilityFlags::PARALLEL | CapabilityFlags::IN_PROCESS_COMPUTE, ..Capabilities::default() }
    }
    fn create(_: serde_json::Value) -> Result<Self, PluginError_NE> {
        Ok(Self)
    }
    fn submit(&self, _: NodeTask, sink: CompletionSinkBox) {
        sink.complete(Err(PluginError::unsupported("the fuzz backend only plans")).into());
    }
}
