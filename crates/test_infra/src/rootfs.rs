//! A minimal guest rootfs from Debian's busybox-static: one static binary
//! and a link per applet, plus the users and groups the tests run as.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's busybox-static installs busybox.
pub const BUSYBOX: &str = "/bin/busybox";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nvideo:x:44:\napp:x:1000:\nnogroup:x:65534:\n";

/// Builds a busybox rootfs in `dir` (created if needed) and returns it.
pub fn busybox_rootfs(dir: &Path) -> std::io::Result<PathBuf> {
    let busybox = Path::new(BUSYBOX);
    if !is_static_busybox(busybox) {
        return Err(std::io::Error::other(format!(
            "{BUSYBOX} is missing or not static: apt-get install busybox-static"
        )));
    }
    for sub in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/app", "srv", "var/tmp",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::copy(busybox, dir.join("bin/busybox"))?;
    let list = Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join("bin").join(applet);
        if applet != "busybox" && link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    std::fs::write(dir.join("etc/passwd"), PASSWD)?;
    std::fs::write(dir.join("etc/group"), GROUP)?;
    std::fs::write(dir.join("etc/hostname"), "busybox\n")?;
    std::fs::set_permissions(dir.join("var/tmp"), std::fs::Permissions::from_mode(0o1777))?;
    Ok(dir.to_owned())
}

/// A dynamic busybox would need the host's libc inside the guest: refuse
/// any 64-bit ELF with a program interpreter (PT_INTERP).
fn is_static_busybox(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(bytes) = std::fs::read(path) else { return false };
    let field = |at: usize, len: usize| {
        bytes
            .get(at..at + len)
            .map(|b| b.iter().rev().fold(0usize, |acc, x| acc << 8 | usize::from(*x)))
    };
    if !bytes.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (field(0x20, 8), field(0x36, 2), field(0x38, 2)) else {
        return false;
    };
    (0..phnum).all(|i| field(phoff + i * phentsize, 4).is_some_and(|kind| kind != PT_INTERP as usize))
}
