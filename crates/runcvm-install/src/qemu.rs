//! Gathering the bundled QEMU from the host: the binary, every library
//! `ldd` lists for it and for its TCG module (symlinks resolved, each copied
//! under the soname the binary asks for), the loader, and the firmware the
//! microvm machine loads. Nothing is written here.

use crate::InstallError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's TCG accelerator, a loadable module in its full QEMU build.
pub const TCG_MODULE: &str = "accel-tcg-x86_64.so";
/// Where Debian installs QEMU's modules.
pub const DEFAULT_MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/qemu";
/// Where Debian installs QEMU's firmware, searched in this order (QEMU's own).
pub const DEFAULT_FIRMWARE_DIRS: [&str; 2] = ["/usr/share/qemu", "/usr/share/seabios"];
/// Firmware for `-M microvm`: QEMU 7.2 loads `qboot.rom` (Debian's
/// `bios-microvm.bin` links to it); `pvh.bin` and `linuxboot_dma.bin` are
/// the option ROMs it adds for `-kernel` unless `x-option-roms=off`.
pub const FIRMWARE: [&str; 4] = ["qboot.rom", "bios-microvm.bin", "pvh.bin", "linuxboot_dma.bin"];

/// The host files a bundle is made of (all symlinks resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QemuSources {
    pub program: PathBuf,
    pub loader: PathBuf,
    /// (soname, file), in the order `ldd` lists them.
    pub libraries: Vec<(String, PathBuf)>,
    /// (file name, file).
    pub modules: Vec<(String, PathBuf)>,
    /// (file name, file).
    pub firmware: Vec<(String, PathBuf)>,
}

/// The file glibc's loader preloads into every program it starts, and what
/// the bundled loader reads instead: a path of the same length that cannot
/// exist (procfs has no such entry). QEMU runs as root in a container whose
/// `/etc` is the image's; the image must not get a library into it.
const PRELOAD_FILE: &[u8] = b"/etc/ld.so.preload\0";
const NO_PRELOAD_FILE: &[u8] = b"/proc/nonexistent0\0";

/// The bundled loader's bytes: the host's loader with its preload file
/// pointed where nothing can be. Exactly one occurrence must be there.
pub(crate) fn harden_loader(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let found: Vec<usize> = bytes
        .windows(PRELOAD_FILE.len())
        .enumerate()
        .filter(|(_, w)| *w == PRELOAD_FILE)
        .map(|(at, _)| at)
        .collect();
    match found.as_slice() {
        [at] => {
            bytes[*at..*at + NO_PRELOAD_FILE.len()].copy_from_slice(NO_PRELOAD_FILE);
            Ok(bytes)
        }
        [] => Err("it names no /etc/ld.so.preload (not glibc's loader?)".to_owned()),
        _ => Err(format!("it names /etc/ld.so.preload {} times", found.len())),
    }
}

/// Finds everything the bundle needs; fails naming the first missing piece.
pub(crate) fn gather(qemu: &Path, module_dir: &Path, firmware_dirs: &[PathBuf]) -> Result<QemuSources, InstallError> {
    let program = real_file(qemu).ok_or_else(|| InstallError::QemuMissing {
        searched: qemu.display().to_string(),
    })?;
    let tcg = real_file(&module_dir.join(TCG_MODULE)).ok_or_else(|| InstallError::TcgModuleMissing {
        dir: module_dir.to_owned(),
    })?;
    let mut libraries: Vec<(String, PathBuf)> = Vec::new();
    let mut loader = None;
    for object in [&program, &tcg] {
        let listing = ldd(object)?;
        if let Some(missing) = listing.not_found.first() {
            return Err(InstallError::LibraryNotFound {
                program: object.clone(),
                soname: missing.clone(),
            });
        }
        for (soname, path) in listing.libraries {
            if libraries.iter().all(|(known, _)| *known != soname) {
                let file = real_file(&path).ok_or_else(|| InstallError::LibraryNotFound {
                    program: object.clone(),
                    soname: soname.clone(),
                })?;
                libraries.push((soname, file));
            }
        }
        loader = loader.or(listing.loader);
    }
    let loader = loader
        .as_deref()
        .and_then(real_file)
        .ok_or_else(|| InstallError::NoLoader {
            program: program.clone(),
        })?;
    let mut firmware = Vec::new();
    for name in FIRMWARE {
        let file = firmware_dirs
            .iter()
            .find_map(|dir| real_file(&dir.join(name)))
            .ok_or_else(|| InstallError::FirmwareMissing {
                name,
                searched: firmware_dirs.to_vec(),
            })?;
        firmware.push((name.to_owned(), file));
    }
    Ok(QemuSources {
        program,
        loader,
        libraries,
        modules: vec![(TCG_MODULE.to_owned(), tcg)],
        firmware,
    })
}

/// `qemu-system-x86_64` on `PATH` (`/usr/bin` when `PATH` is unset).
pub(crate) fn find_on_path() -> Option<PathBuf> {
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(crate::QEMU_NAME))
        .find(|candidate| candidate.is_file())
}

/// The file `path` names, symlinks resolved, if it is a regular file.
fn real_file(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok().filter(|p| p.is_file())
}

fn ldd(object: &Path) -> Result<LddListing, InstallError> {
    let output = Command::new("ldd")
        .arg(object)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| InstallError::Ldd {
            program: object.to_owned(),
            detail: format!("cannot run ldd ({e}): install libc-bin"),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(InstallError::Ldd {
            program: object.to_owned(),
            detail: format!("{} {}", stdout.trim(), stderr.trim()).trim().to_owned(),
        });
    }
    Ok(parse_ldd(&stdout))
}

/// What `ldd` said about one binary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LddListing {
    /// (soname, resolved path), in order; the vDSO and the loader excluded.
    pub libraries: Vec<(String, PathBuf)>,
    pub loader: Option<PathBuf>,
    /// Sonames ldd could not find.
    pub not_found: Vec<String>,
}

/// Parses `ldd` output: `soname => /path (0x…)`, `soname => not found`,
/// `/lib64/ld-linux-x86-64.so.2 (0x…)` (the loader) and `linux-vdso.so.1 (0x…)`.
pub(crate) fn parse_ldd(output: &str) -> LddListing {
    let mut listing = LddListing::default();
    for line in output.lines().map(str::trim) {
        let without_address = match line.rfind(" (0x") {
            Some(at) if line.ends_with(')') => &line[..at],
            _ => line,
        };
        if let Some((soname, target)) = without_address.split_once(" => ") {
            let (soname, target) = (soname.trim(), target.trim());
            if target == "not found" {
                listing.not_found.push(soname.to_owned());
            } else if soname.starts_with("ld-linux") {
                listing.loader.get_or_insert_with(|| PathBuf::from(target));
            } else if target.starts_with('/') {
                listing.libraries.push((soname.to_owned(), PathBuf::from(target)));
            }
        } else if without_address.starts_with('/') {
            listing.loader.get_or_insert_with(|| PathBuf::from(without_address));
        }
    }
    listing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_preloads_nothing_from_the_image() {
        let mut loader = b"\x7fELF...".to_vec();
        loader.extend_from_slice(PRELOAD_FILE);
        loader.extend_from_slice(b"/etc/ld.so.cache\0");
        let hardened = harden_loader(loader.clone()).unwrap();
        assert_eq!(hardened.len(), loader.len());
        assert!(!hardened.windows(PRELOAD_FILE.len()).any(|w| w == PRELOAD_FILE));
        assert!(hardened.windows(NO_PRELOAD_FILE.len()).any(|w| w == NO_PRELOAD_FILE));
        assert!(harden_loader(b"no loader".to_vec()).unwrap_err().contains("names no"));
        let mut twice = loader.clone();
        twice.extend_from_slice(PRELOAD_FILE);
        assert!(harden_loader(twice).unwrap_err().contains("2 times"));
    }

    #[test]
    fn ldd_output_gives_sonames_paths_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd1b5f2000)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f2c4c2f0000)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2c4c0f0000)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f2c4c330000)\n\tlibgone.so.3 => not found\n";
        let listing = parse_ldd(output);
        assert_eq!(
            listing.libraries,
            [
                ("libz.so.1".to_owned(), PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1")),
                ("libc.so.6".to_owned(), PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"))
            ]
        );
        assert_eq!(listing.loader, Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2")));
        assert_eq!(listing.not_found, ["libgone.so.3"]);
    }

    #[test]
    fn a_loader_listed_as_a_dependency_is_the_loader() {
        let listing = parse_ldd("\tld-linux-x86-64.so.2 => /lib64/ld-linux-x86-64.so.2 (0x00007f0000000000)\n");
        assert!(listing.libraries.is_empty());
        assert_eq!(listing.loader, Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2")));
    }

    #[test]
    fn a_static_binary_lists_nothing() {
        assert_eq!(parse_ldd("\tstatically linked\n"), LddListing::default());
    }
}
