//! A process's capabilities as OCI's `process.capabilities` gives them
//! (names per set), their numbers, and the bit masks that are applied.

use serde::{Deserialize, Serialize};

/// Capability names in kernel order: the index is the capability's number
/// (`include/uapi/linux/capability.h`, up to `CAP_CHECKPOINT_RESTORE`, 40).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of capability `name` (`CAP_…`, exactly as the kernel spells
/// it, as runc matches it), if this build knows it.
pub fn capability_number(name: &str) -> Option<u32> {
    let position = NAMES.iter().position(|known| *known == name)?;
    u32::try_from(position).ok()
}

/// The sets of `process.capabilities`, by name. Read as leniently as the
/// rest of the OCI input: a set left out is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCapabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

/// The sets as bit masks (bit N is capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilityMasks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl ProcessCapabilities {
    /// The masks on a kernel whose last capability is `last`, and the names
    /// no set could use because this build or that kernel does not know them
    /// (runc skips those with a warning too).
    pub fn masks(&self, last: u32) -> (CapabilityMasks, Vec<String>) {
        let mut unknown = Vec::new();
        let mut mask = |names: &[String]| {
            names.iter().fold(0u64, |bits, name| match capability_number(name) {
                Some(number) if number <= last => bits | (1u64 << number),
                _ => {
                    if !unknown.contains(name) {
                        unknown.push(name.clone());
                    }
                    bits
                }
            })
        };
        let masks = CapabilityMasks {
            bounding: mask(&self.bounding),
            effective: mask(&self.effective),
            permitted: mask(&self.permitted),
            inheritable: mask(&self.inheritable),
            ambient: mask(&self.ambient),
        };
        (masks, unknown)
    }

    /// `SET=CAP_A,CAP_B` for each set, the form `runcvm exec --caps` takes.
    pub fn to_flags(&self) -> Vec<String> {
        self.sets()
            .into_iter()
            .map(|(set, names)| format!("{set}={}", names.join(",")))
            .collect()
    }

    /// Sets one set from `SET=CAP_A,CAP_B` (`SET=` for an empty set).
    pub fn set_from_flag(&mut self, flag: &str) -> Result<(), String> {
        let (set, names) = flag
            .split_once('=')
            .ok_or_else(|| format!("--caps {flag:?} is not SET=CAP_A,CAP_B"))?;
        let list = match set {
            "bounding" => &mut self.bounding,
            "effective" => &mut self.effective,
            "permitted" => &mut self.permitted,
            "inheritable" => &mut self.inheritable,
            "ambient" => &mut self.ambient,
            _ => {
                return Err(format!(
                    "--caps {flag:?}: no capability set {set:?} (bounding, effective, permitted, inheritable, ambient)"
                ));
            }
        };
        *list = names.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect();
        Ok(())
    }

    fn sets(&self) -> [(&'static str, &[String]); 5] {
        [
            ("bounding", &self.bounding),
            ("effective", &self.effective),
            ("permitted", &self.permitted),
            ("inheritable", &self.inheritable),
            ("ambient", &self.ambient),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_kernels_numbers() {
        assert_eq!(capability_number("CAP_CHOWN"), Some(0));
        assert_eq!(capability_number("CAP_NET_ADMIN"), Some(12));
        assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("cap_sys_admin"), None, "runc matches names exactly");
        assert_eq!(capability_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("CAP_NOT_A_THING"), None);
    }

    #[test]
    fn sets_become_masks_and_unknown_names_are_named() {
        let caps = ProcessCapabilities {
            bounding: vec![
                "CAP_CHOWN".into(),
                "CAP_KILL".into(),
                "CAP_FUTURE".into(),
                "CAP_BPF".into(),
            ],
            effective: vec!["CAP_KILL".into()],
            ambient: vec!["CAP_FUTURE".into()],
            ..Default::default()
        };
        let (masks, unknown) = caps.masks(40);
        assert_eq!(masks.bounding, (1 << 39) | 0b10_0001);
        assert_eq!(masks.effective, 0b10_0000);
        assert_eq!((masks.permitted, masks.ambient), (0, 0));
        assert_eq!(unknown, ["CAP_FUTURE"]);
        // A kernel older than CAP_BPF (39) does not know it either.
        let (masks, unknown) = caps.masks(38);
        assert_eq!(masks.bounding, 0b10_0001);
        assert_eq!(unknown, ["CAP_FUTURE", "CAP_BPF"]);
    }

    #[test]
    fn flags_round_trip_every_set_including_empty_ones() {
        let caps = ProcessCapabilities {
            bounding: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            effective: vec!["CAP_KILL".into()],
            ..Default::default()
        };
        let flags = caps.to_flags();
        assert_eq!(flags[0], "bounding=CAP_CHOWN,CAP_KILL");
        assert_eq!(flags[4], "ambient=");
        let mut back = ProcessCapabilities {
            ambient: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        for flag in &flags {
            back.set_from_flag(flag).expect("flag");
        }
        assert_eq!(back, caps);
        assert!(back.set_from_flag("bounding").is_err());
        assert!(back.set_from_flag("everything=CAP_KILL").is_err());
    }
}
