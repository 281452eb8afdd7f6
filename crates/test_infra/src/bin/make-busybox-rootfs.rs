//! `make-busybox-rootfs DIR`: the demo's and the benchmark's guest rootfs.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: make-busybox-rootfs DIR");
        std::process::exit(2);
    };
    if let Err(e) = runcvm_test_infra::busybox_rootfs(std::path::Path::new(&dir)) {
        eprintln!("make-busybox-rootfs: {e}");
        std::process::exit(1);
    }
}
