//! Firecracker: the configuration file a guest boots from, the API client that
//! talks to a running Firecracker, the host side of its hybrid vsock, and how
//! the binary is found and started.
//!
//! - [`config`] owns the `--config-file` JSON: one typed struct per resource
//!   of Firecracker's API (`BootSource`, `Drive`, `NetworkInterface`,
//!   `MachineConfiguration`, `Vsock`, `Logger`, `Metrics`), built from a
//!   [`FirecrackerLaunch`].
//! - [`api`] owns the API socket: a small synchronous HTTP/1.1 client over a
//!   Unix socket (`GET /`, `PUT /actions`, ...) and the wait for the socket to
//!   appear.
//! - [`vsock`] owns the host side of the control channel: guest-initiated
//!   connections arrive on `<uds_path>_<port>`; host-initiated ones say
//!   `CONNECT <port>\n` on `uds_path`.
//! - [`launch`] owns the binary (`RUNCVM_FIRECRACKER`, else the install's
//!   `bin/firecracker`), the checks before it starts and its command line
//!   (`--config-file`, `--api-sock`), and why there is no jailer.
//! - [`schema`] checks JSON against Firecracker's published API description;
//!   the tests validate every configuration and request body with it.
//!
//! The VM ends the way the QEMU backend's does: guest init reboots, and with
//! `reboot=k` the kernel resets through the i8042 controller, on which
//! Firecracker (x86_64) exits. Firecracker has no power-off.

pub mod api;
pub mod config;
pub mod launch;
pub mod schema;
pub mod vsock;

pub use api::{ActionType, ApiClient, ApiError, InstanceActionInfo, InstanceInfo, InstanceState, wait_for_socket};
pub use config::{ConfigError, ExtraDisk, FirecrackerConfig, FirecrackerLaunch, FirecrackerLogs, Nic};
pub use launch::{FIRECRACKER_ENV, FirecrackerBinary, LaunchError};
pub use vsock::{CONTROL_PORT, GUEST_CID, HOST_CID, VsockError, connect_host_initiated, listen_guest_initiated};
