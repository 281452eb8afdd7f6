//! A launch file for unit tests: the fields every test leaves alone, one
//! place for them all.

use runcvm_spec::ContainerLaunch;
use runcvm_spec::launch::LaunchRole;

/// A launch file of `role` for a container running `app`, 1 vCPU and
/// 256 MiB under QEMU's TCG.
pub fn launch(role: LaunchRole) -> ContainerLaunch {
    ContainerLaunch {
        version: runcvm_spec::launch::LAUNCH_VERSION,
        process: runcvm_spec::Entrypoint::new(vec!["app".into()], vec![]),
        plan: runcvm_spec::LaunchPlan::default(),
        cpus: 1,
        memory_mib: 256,
        accel: runcvm_spec::launch::LaunchAccel::Tcg,
        hypervisor: runcvm_spec::launch::LaunchHypervisor::Qemu,
        kernel_args: vec![],
        vmm_user: runcvm_spec::VmmUser::DEFAULT,
        volumes: vec![],
        network_namespace: None,
        termination_message_path: None,
        rootfs: None,
        boot_disk: "/var/lib/runcvm/boot/b.ext4".into(),
        role,
    }
}
