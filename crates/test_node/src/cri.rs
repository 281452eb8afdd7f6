//! A blocking CRI v1 client (`k8s-cri` over tonic on containerd's Unix
//! socket), driven by a current-thread tokio runtime it owns so tests stay
//! synchronous. Each call has a deadline; a failure is an `anyhow` error
//! naming the call and carrying the CRI status message.

use crate::spec::{ContainerSpec, PodSpec};
use anyhow::{Context, Result, anyhow};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::ContainerState;

/// Sandbox id → the network namespace file containerd made for it.
pub(crate) type NetnsRecord = Arc<Mutex<BTreeMap<String, PathBuf>>>;

/// A pod sandbox that runs.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub spec: PodSpec,
}

impl Pod {
    pub fn log_directory(&self) -> &Path {
        Path::new(&self.spec.config.log_directory)
    }
}

/// A pod sandbox's status.
#[derive(Debug, Clone)]
pub struct PodStatus {
    pub id: String,
    pub ready: bool,
    /// The pod IP (empty while the sandbox has none).
    pub ip: String,
    pub runtime_handler: String,
    /// The verbose `info` map (containerd: key `info`, a JSON document).
    pub info: HashMap<String, String>,
}

/// A container's status, the fields tests look at.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub state: ContainerState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub log_path: String,
    pub started_at: i64,
    pub finished_at: i64,
}

/// What `ExecSync` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What a streaming `Exec` should connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecStreams {
    pub stdin: bool,
    pub tty: bool,
}

/// The client. Methods take `&self`; calls are serialised by the runtime.
#[derive(Debug)]
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    timeout: std::cell::Cell<Duration>,
    netns: NetnsRecord,
}

impl Cri {
    /// Connects to containerd's socket (no call is made yet).
    pub fn connect(socket: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a tokio runtime")?;
        let path = socket.to_owned();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        });
        let channel = runtime.block_on(async {
            Endpoint::try_from("http://[::]")
                .context("endpoint")
                .map(|e| e.connect_with_connector_lazy(connector))
        })?;
        Ok(Self {
            runtime,
            channel,
            timeout: std::cell::Cell::new(Duration::from_secs(120)),
            netns: NetnsRecord::default(),
        })
    }

    /// The deadline of every later call (120 s by default).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }

    pub(crate) fn netns_record(&self) -> NetnsRecord {
        Arc::clone(&self.netns)
    }

    fn call<T, F>(&self, what: &str, call: impl FnOnce(Channel) -> F) -> Result<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let future = call(self.channel.clone());
        let timeout = self.timeout.get();
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, future).await });
        match outcome {
            Err(_) => Err(anyhow!("CRI {what}: no answer within {timeout:?}")),
            Ok(Err(status)) => Err(anyhow!("CRI {what} failed ({:?}): {}", status.code(), status.message())),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    pub fn version(&self) -> Result<cri::VersionResponse> {
        self.call("Version", |c| async move {
            RuntimeServiceClient::new(c)
                .version(cri::VersionRequest::default())
                .await
        })
    }

    /// `Status`; with `verbose`, containerd adds its config as JSON under
    /// `info["config"]`.
    pub fn status(&self, verbose: bool) -> Result<cri::StatusResponse> {
        self.call("Status", |c| async move {
            RuntimeServiceClient::new(c)
                .status(cri::StatusRequest { verbose })
                .await
        })
    }

    /// The runtime handlers containerd's CRI plugin was configured with (the
    /// keys of `containerd.runtimes` in the verbose status's config).
    pub fn runtime_handlers(&self) -> Result<Vec<String>> {
        let status = self.status(true)?;
        let config = status.info.get("config").context("no config in the verbose Status")?;
        let config: serde_json::Value = serde_json::from_str(config).context("the verbose Status config")?;
        let runtimes = config["containerd"]["runtimes"]
            .as_object()
            .context("no containerd.runtimes in the verbose Status config")?;
        Ok(runtimes.keys().cloned().collect())
    }

    /// Runs a pod sandbox and records its network namespace for clean-up.
    pub fn run_pod_sandbox(&self, spec: &PodSpec) -> Result<Pod> {
        let request = cri::RunPodSandboxRequest {
            config: Some(spec.config.clone()),
            runtime_handler: spec.runtime_handler.clone(),
        };
        let id = self
            .call("RunPodSandbox", |c| async move {
                RuntimeServiceClient::new(c).run_pod_sandbox(request).await
            })?
            .pod_sandbox_id;
        if let Some(path) = self.pod_sandbox_status(&id).ok().and_then(|s| netns_path(&s.info)) {
            self.netns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.clone(), path);
        }
        Ok(Pod { id, spec: spec.clone() })
    }

    pub fn pod_sandbox_status(&self, pod_id: &str) -> Result<PodStatus> {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.to_owned(),
            verbose: true,
        };
        let response = self.call("PodSandboxStatus", |c| async move {
            RuntimeServiceClient::new(c).pod_sandbox_status(request).await
        })?;
        let status = response.status.context("PodSandboxStatus without a status")?;
        Ok(PodStatus {
            ready: status.state == i32::from(cri::PodSandboxState::SandboxReady),
            ip: status.network.map(|n| n.ip).unwrap_or_default(),
            runtime_handler: status.runtime_handler,
            id: status.id,
            info: response.info,
        })
    }

    pub fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>> {
        let response = self.call("ListPodSandbox", |c| async move {
            RuntimeServiceClient::new(c)
                .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await
        })?;
        Ok(response.items)
    }

    pub fn stop_pod_sandbox(&self, pod_id: &str) -> Result<()> {
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        };
        self.call("StopPodSandbox", |c| async move {
            RuntimeServiceClient::new(c).stop_pod_sandbox(request).await
        })?;
        Ok(())
    }

    pub fn remove_pod_sandbox(&self, pod_id: &str) -> Result<()> {
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.to_owned(),
        };
        self.call("RemovePodSandbox", |c| async move {
            RuntimeServiceClient::new(c).remove_pod_sandbox(request).await
        })?;
        Ok(())
    }

    /// Creates a container in `pod`; returns its id.
    pub fn create_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(spec.config.clone()),
            sandbox_config: Some(pod.spec.config.clone()),
        };
        let response = self.call("CreateContainer", |c| async move {
            RuntimeServiceClient::new(c).create_container(request).await
        })?;
        Ok(response.container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<()> {
        let request = cri::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.call("StartContainer", |c| async move {
            RuntimeServiceClient::new(c).start_container(request).await
        })?;
        Ok(())
    }

    /// Creates and starts a container; returns its id.
    pub fn run_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let id = self.create_container(pod, spec)?;
        self.start_container(&id)?;
        Ok(id)
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerInfo> {
        let request = cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let response = self.call("ContainerStatus", |c| async move {
            RuntimeServiceClient::new(c).container_status(request).await
        })?;
        let status = response.status.context("ContainerStatus without a status")?;
        Ok(ContainerInfo {
            state: ContainerState::try_from(status.state).unwrap_or(ContainerState::ContainerUnknown),
            id: status.id,
            exit_code: status.exit_code,
            reason: status.reason,
            message: status.message,
            log_path: status.log_path,
            started_at: status.started_at,
            finished_at: status.finished_at,
        })
    }

    /// Polls until the container has exited (or `timeout` passes).
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> Result<ContainerInfo> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let info = self.container_status(id)?;
            if info.state == ContainerState::ContainerExited {
                return Ok(info);
            }
            if std::time::Instant::now() >= deadline {
                return Err(anyhow!("container {id} still {:?} after {timeout:?}", info.state));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ExecSync` with a timeout in seconds (0: none).
    pub fn exec_sync<S: AsRef<str>>(&self, id: &str, cmd: &[S], timeout_secs: i64) -> Result<ExecOutput> {
        let request = cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| s.as_ref().to_owned()).collect(),
            timeout: timeout_secs,
        };
        let response = self.call("ExecSync", |c| async move {
            RuntimeServiceClient::new(c).exec_sync(request).await
        })?;
        Ok(ExecOutput {
            stdout: response.stdout,
            stderr: response.stderr,
            exit_code: response.exit_code,
        })
    }

    /// `Exec`: the URL of a streaming session (see [`crate::stream`]).
    /// stdout is always connected; stderr too unless `tty`.
    pub fn exec<S: AsRef<str>>(&self, id: &str, cmd: &[S], streams: ExecStreams) -> Result<String> {
        let request = cri::ExecRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| s.as_ref().to_owned()).collect(),
            tty: streams.tty,
            stdin: streams.stdin,
            stdout: true,
            stderr: !streams.tty,
        };
        let response = self.call(
            "Exec",
            |c| async move { RuntimeServiceClient::new(c).exec(request).await },
        )?;
        Ok(response.url)
    }

    /// `PortForward`: the URL of a session forwarding `ports` of the pod
    /// (see [`crate::portforward`]).
    pub fn port_forward(&self, pod_id: &str, ports: &[u16]) -> Result<String> {
        let request = cri::PortForwardRequest {
            pod_sandbox_id: pod_id.to_owned(),
            port: ports.iter().map(|p| i32::from(*p)).collect(),
        };
        let response = self.call("PortForward", |c| async move {
            RuntimeServiceClient::new(c).port_forward(request).await
        })?;
        Ok(response.url)
    }

    /// `UpdateContainerResources`: a new memory limit in bytes (in-place
    /// resize, as kubelet sends it).
    pub fn update_memory_limit(&self, id: &str, bytes: i64) -> Result<()> {
        let request = cri::UpdateContainerResourcesRequest {
            container_id: id.to_owned(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: bytes,
                cpu_shares: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.call("UpdateContainerResources", |c| async move {
            RuntimeServiceClient::new(c).update_container_resources(request).await
        })?;
        Ok(())
    }

    /// `StopContainer` with a grace period in seconds.
    pub fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let request = cri::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_secs,
        };
        self.call("StopContainer", |c| async move {
            RuntimeServiceClient::new(c).stop_container(request).await
        })?;
        Ok(())
    }

    /// StopContainer with `timeout_secs` of grace, then the container's
    /// status (which must be exited) and how long the stop took.
    pub fn stop_container_timed(&self, id: &str, timeout_secs: i64) -> Result<(ContainerInfo, Duration)> {
        let began = std::time::Instant::now();
        self.stop_container(id, timeout_secs)?;
        let elapsed = began.elapsed();
        let info = self.container_status(id)?;
        if info.state != ContainerState::ContainerExited {
            anyhow::bail!("container {id} is {:?} after StopContainer: {info:?}", info.state);
        }
        Ok((info, elapsed))
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        let request = cri::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.call("RemoveContainer", |c| async move {
            RuntimeServiceClient::new(c).remove_container(request).await
        })?;
        Ok(())
    }

    /// The containers of one pod, or all of them.
    pub fn list_containers(&self, pod_id: Option<&str>) -> Result<Vec<cri::Container>> {
        let request = cri::ListContainersRequest {
            filter: pod_id.map(|id| cri::ContainerFilter {
                pod_sandbox_id: id.to_owned(),
                ..Default::default()
            }),
        };
        let response = self.call("ListContainers", |c| async move {
            RuntimeServiceClient::new(c).list_containers(request).await
        })?;
        Ok(response.containers)
    }

    /// `ImageStatus`: the image if the CRI plugin knows it.
    pub fn image_status(&self, reference: &str) -> Result<Option<cri::Image>> {
        let request = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: reference.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        let response = self.call("ImageStatus", |c| async move {
            ImageServiceClient::new(c).image_status(request).await
        })?;
        Ok(response.image)
    }
}

/// The network namespace path in a verbose `PodSandboxStatus` info (the
/// `network` entry of `runtimeSpec.linux.namespaces` in `info["info"]`).
fn netns_path(info: &HashMap<String, String>) -> Option<PathBuf> {
    let info: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|ns| ns["type"] == "network")
        .and_then(|ns| ns["path"].as_str())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_netns_is_read_from_the_verbose_info() {
        let info = HashMap::from([(
            "info".to_owned(),
            r#"{"pid":7,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}}"#
                .to_owned(),
        )]);
        assert_eq!(netns_path(&info), Some(PathBuf::from("/var/run/netns/cni-1")));
        assert_eq!(netns_path(&HashMap::new()), None);
    }
}
