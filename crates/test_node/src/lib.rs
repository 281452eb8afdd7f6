//! T3 harness: a private containerd node driven over CRI exactly as kubelet
//! drives it. [`Node`] starts containerd (1.6, or 2.x with
//! `RUNCVM_T3_CONTAINERD=2`: see [`containerd`]) in its own network namespace
//! with a generated config (runc plus the caller's runtime handlers), imports
//! locally built busybox and pause images, and tears everything down on
//! drop; [`Cri`] is a blocking CRI v1 client; [`stream`] runs streaming
//! execs over WebSocket, [`portforward`] port-forward sessions; [`crilog`]
//! parses container log files;
//! [`require_t3`] fails (never skips) when a prerequisite is missing.
//!
//! ```no_run
//! use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, Node, NodeOptions, RuntimeHandler, crilog};
//! use std::time::Duration;
//!
//! runcvm_test_node::require_t3();
//! let options = NodeOptions::default().runtime(RuntimeHandler::new("runcvm", "/opt/runcvm/bin/runcvm-runtime"));
//! let node = Node::start(options).expect("node");
//! let cri = node.cri().expect("cri");
//! let pod = cri.run_pod_sandbox(&node.pod("web").runtime_handler("runcvm")).expect("pod");
//! let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo hello; exit 3");
//! let id = cri.run_container(&pod, &spec).expect("container");
//! let status = cri.wait_exited(&id, Duration::from_secs(60)).expect("exit");
//! assert_eq!(status.exit_code, 3);
//! let lines = crilog::read(&spec.log_file(pod.log_directory())).expect("log");
//! assert_eq!(lines[0].line, "hello");
//! cri.stop_pod_sandbox(&pod.id).expect("stop");
//! cri.remove_pod_sandbox(&pod.id).expect("remove");
//! node.assert_nothing_left(&[&pod.id, &id]);
//! ```

pub mod config;
pub mod containerd;
pub mod cri;
pub mod crilog;
pub mod host;
pub mod image;
pub mod layer;
pub mod node;
pub mod portforward;
pub mod spec;
pub mod stream;
mod teardown;
pub mod tier;

pub use config::{Cni, RuntimeHandler};
pub use containerd::ContainerdVersion;
pub use cri::{ContainerInfo, ContainerState, Cri, ExecOutput, ExecStreams, Pod, PodStatus};
pub use crilog::{LogLine, Stream};
pub use image::{BUSYBOX_IMAGE, Image, ImageConfig, PAUSE_IMAGE};
pub use layer::Compression;
pub use node::{Node, NodeOptions};
pub use portforward::Forwarded;
pub use spec::{ContainerSpec, Namespace, NamespaceMode, PodSpec, Seccomp};
pub use stream::{StreamInput, StreamOutput};
pub use tier::require_t3;
