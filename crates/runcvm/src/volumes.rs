//! The container's shared mounts, served to the guest over NFS on the host
//! identity 169.254.1.254 (troubleshooting guide, section 3).

use anyhow::Context;
use runcvm_nfs::Export;
use runcvm_spec::GuestVolume;
use runcvm_spec::net::HOST_IDENTITY_IP;
use std::net::{SocketAddr, TcpListener};

/// Starts the server for `exports` (none: no server) and returns what the
/// guest mounts. The port is chosen by the kernel.
pub fn serve(exports: &[Export]) -> anyhow::Result<Vec<GuestVolume>> {
    if exports.is_empty() {
        return Ok(Vec::new());
    }
    let address = SocketAddr::from((HOST_IDENTITY_IP, 0));
    let listener = TcpListener::bind(address).with_context(|| {
        format!("cannot listen for NFS on {HOST_IDENTITY_IP} (troubleshooting guide, section 3): is br-eth0 up?")
    })?;
    let server = runcvm_nfs::serve(listener, exports.to_vec())?;
    runcvm_log::debug!("NFS server on {} for {} volumes", server.address, exports.len());
    Ok(exports
        .iter()
        .map(|e| GuestVolume {
            path: e.name.clone(),
            read_only: e.read_only,
            port: server.address.port(),
        })
        .collect())
}

/// Parses `HOST:GUEST[:ro]`.
pub fn parse_volume(spec: &str) -> Result<Export, String> {
    let bad = || format!("--volume {spec:?} is not HOST_DIR:CONTAINER_PATH[:ro]");
    let mut parts = spec.split(':');
    let (host, guest) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let read_only = match parts.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() || !guest.starts_with('/') || guest == "/" || host.is_empty() {
        return Err(bad());
    }
    let path = std::path::PathBuf::from(host);
    if !path.is_dir() {
        return Err(format!("--volume {spec:?}: {host} is not a folder on the host"));
    }
    Ok(Export {
        name: guest.trim_end_matches('/').to_owned(),
        path,
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs_parse_and_bad_ones_are_named() {
        let export = parse_volume("/tmp:/data:ro").unwrap();
        assert_eq!((export.name.as_str(), export.read_only), ("/data", true));
        assert!(!parse_volume("/tmp:/data").unwrap().read_only);
        for bad in ["/tmp", "/tmp:data", "/tmp:/", "/tmp:/d:rx", ":/d", "/tmp:/d:ro:x"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        assert!(parse_volume("/nonexistent:/d").unwrap_err().contains("not a folder"));
    }
}
