//! Small system calls of init: hostname, sysctls, loopback, power-off.

use crate::sessions::Sessions;
use anyhow::Context;

pub fn set_hostname(hostname: &str) -> anyhow::Result<()> {
    nix::unistd::sethostname(hostname).with_context(|| format!("cannot set the hostname to {hostname:?}"))?;
    runcvm_log::debug!("hostname {hostname}");
    Ok(())
}

/// Sets the pod's sysctls (`kernel.shm_rmid_forced` is
/// `/proc/sys/kernel/shm_rmid_forced`), as runc sets them before the
/// container starts; one the guest kernel lacks fails the start, as under
/// runc.
pub fn set_sysctls(sysctls: &std::collections::BTreeMap<String, String>) -> anyhow::Result<()> {
    for (name, value) in sysctls {
        let plain = |part: &str| !part.is_empty() && part != "." && part != ".." && !part.contains('\0');
        if !name.split('.').all(|part| plain(&part.replace('/', "."))) {
            anyhow::bail!("the pod's sysctl name {name:?} is not a sysctl's: remove it from the pod");
        }
        let path = sysctl_path(name);
        std::fs::write(&path, value.as_bytes()).with_context(|| {
            format!(
                "cannot set the pod's sysctl {name}={value} ({}): remove it from the pod or use another runtime class",
                path.display()
            )
        })?;
        runcvm_log::debug!("sysctl {name} = {value}");
    }
    Ok(())
}

/// The file of a dotted sysctl name; a slash in it is a dot in the path
/// (`net.ipv4.conf.eth0/1.rp_filter`), as sysctl(8) reads names.
fn sysctl_path(name: &str) -> std::path::PathBuf {
    let parts: Vec<String> = name.split('.').map(|part| part.replace('/', ".")).collect();
    std::path::Path::new("/proc/sys").join(parts.join("/"))
}

/// `IFF_UP` as the `c_short` that `ifreq` holds (libc has it as `c_int`).
const IFF_UP: libc::c_short = 0x1;

/// Brings `lo` up; the kernel then gives it 127.0.0.1/8 and ::1 itself.
pub fn bring_up_loopback() -> anyhow::Result<()> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot open a socket to configure lo")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(c"lo".to_bytes_with_nul()) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads into a valid, live ifreq naming "lo".
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read the flags of lo");
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled.
    unsafe {
        request.ifr_ifru.ifru_flags |= IFF_UP;
    }
    // SAFETY: SIOCSIFFLAGS reads the same valid ifreq.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot bring lo up");
    }
    runcvm_log::debug!("lo is up");
    Ok(())
}

/// Writes a file the container expects (`/etc/resolv.conf`, ...), replacing
/// whatever the image had there, a symlink included; with `mode`, as the
/// node has it, and with `owner` (uid, gid) taking it over.
pub fn write_file(path: &str, content: &[u8], mode: Option<u32>, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path).with_context(|| format!("cannot replace the symlink {}", path.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to the pod's root", path.display()))?;
    }
    runcvm_log::debug!("wrote {} ({} bytes)", path.display(), content.len());
    Ok(())
}

/// Gives folders init made to the pod's root (a pod in a user namespace of
/// its own, whose root is not the guest's).
pub fn give_to(folders: &[&str], (uid, gid): (u32, u32)) -> anyhow::Result<()> {
    for folder in folders {
        std::os::unix::fs::chown(folder, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {folder} to the pod's root"))?;
    }
    Ok(())
}

/// The signals that end a container that has no process (the sleeping
/// `[VM-START]` case), as they would end a container's init.
pub const STOPS_INIT: [nix::sys::signal::Signal; 4] = [
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
];

/// Kills every process but init and reaps them: nothing of the pod may
/// outlive its VM, exec sessions included.
pub fn kill_all(sessions: Option<&Sessions>) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    // No exec session starts from here on, so one kill reaches everything
    // (the containers' PID namespaces are below init's). kill(-1) cannot
    // tell when nothing is left: it counts kernel threads as signalled.
    if let Some(sessions) = sessions {
        sessions.close();
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    match sessions {
        Some(sessions) => crate::reaper::reap_all(sessions.waiters()),
        None => crate::reaper::reap_all(&crate::reaper::Waiters::default()),
    }
}

/// Ends the VM: stops every process, flushes the disk, reboots. With
/// `-no-reboot` (QEMU) and `reboot=k` (Firecracker) a reboot ends the VMM,
/// which is how the launcher learns the guest is gone.
pub fn power_off(sessions: Option<&Sessions>) -> ! {
    kill_all(sessions);
    crate::console::hand_back();
    nix::unistd::sync();
    runcvm_log::debug!("powering off");
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // reboot(2) does not return for PID 1 unless it failed; the kernel
    // panics when init exits, and panic=-1 reboots too.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_map_to_their_files() {
        assert_eq!(
            sysctl_path("kernel.shm_rmid_forced"),
            std::path::Path::new("/proc/sys/kernel/shm_rmid_forced")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/1.rp_filter"),
            std::path::Path::new("/proc/sys/net/ipv4/conf/eth0.1/rp_filter")
        );
    }
}
