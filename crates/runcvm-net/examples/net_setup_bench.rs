//! Prints how long the launcher's network set-up takes (observe + apply,
//! the identity guard included), first start and restart, over fresh
//! simulated pods. Root only. `scripts/bench.sh` runs it.

use runcvm_net::guard::guard_host_identity;
use runcvm_net::{DevNetTun, TakeOverOptions};
use runcvm_netlink::NetlinkSocket;
use runcvm_test_infra::{PodNet, PodNetOptions, Style};
use std::time::{Duration, Instant};

fn take_over_once(net: &PodNet) -> Duration {
    net.pod.enter(|| {
        let started = Instant::now();
        guard_host_identity().expect("guard");
        let mut netlink = NetlinkSocket::route().expect("netlink");
        runcvm_net::take_over(&mut netlink, &DevNetTun::default(), TakeOverOptions::default()).expect("take over");
        started.elapsed()
    })
}

fn median_ms(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    )
}

fn main() {
    let runs: usize = std::env::var("BENCH_NET_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for style in [Style::Bridge, Style::PointToPoint] {
        let (mut first, mut restart) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let net = PodNet::build(PodNetOptions::new(style));
            first.push(take_over_once(&net));
            restart.push(take_over_once(&net));
        }
        let (m, lo, hi) = median_ms(first);
        let (rm, rlo, rhi) = median_ms(restart);
        println!(
            "network set-up, {style:?} pod, {runs} runs: first start median {m:.2} ms (min {lo:.2}, max {hi:.2}); restart median {rm:.2} ms (min {rlo:.2}, max {rhi:.2})"
        );
    }
}
