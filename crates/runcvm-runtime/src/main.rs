//! `runcvm-runtime`: runc's command line, for containerd's `runcvm` handler.

fn main() {
    let level = runcvm_log::LogLevel::from_env().unwrap_or(runcvm_log::LogLevel::Info);
    runcvm_log::init("runcvm-runtime", level);
    let invocation = runcvm_runtime::args::Invocation::parse(std::env::args_os().skip(1).collect());
    let settings = runcvm_runtime::settings::Settings::from_env();
    std::process::exit(runcvm_runtime::dispatch(&invocation, &settings));
}
