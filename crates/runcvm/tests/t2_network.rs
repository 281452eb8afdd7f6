//! T2 networking: real VMs take over simulated pods' networks (bridge-style
//! and point-to-point CNI, overlay MTU, dual stack, cloud anti-spoofing) and
//! talk both ways. Root only; run through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

use runcvm_test_infra::pod_net::POD_MAC;
use runcvm_test_infra::{PodNet, PodNetOptions, RuncvmRun, Style, T2, require_t2, tier};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

fn t2() -> T2 {
    tier::require_root("T2 networking (network namespaces, taps)");
    require_t2(env!("CARGO_BIN_EXE_runcvm"), env!("CARGO_TARGET_TMPDIR"))
}

/// A one-connection TCP server in the node namespace: reads a line, answers
/// `node-ack`, and reports the line it read.
fn node_server(net: &PodNet, ip: IpAddr, port: u16) -> mpsc::Receiver<String> {
    let listener = net.node.enter(|| TcpListener::bind(SocketAddr::new(ip, port)).unwrap());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut line = String::new();
            let mut reader = BufReader::new(stream);
            let _ = reader.read_line(&mut line);
            let _ = reader.get_mut().write_all(b"node-ack\n");
            let _ = sender.send(line.trim().to_owned());
        }
    });
    receiver
}

/// Runs `script` in a VM inside the pod; once the guest prints `listening`,
/// connects from the node namespace to the pod IP (as a Service would) and
/// returns the guest's output with the reply.
fn run_pod_vm(t2: &T2, net: &PodNet, env: &[(&str, &str)], script: &str) -> (String, Option<String>, Option<i32>) {
    let mut run = RuncvmRun::new(t2).in_netns(&net.pod).args(["run", "--network", "pod"]);
    for (key, value) in env {
        run = run.env(key, value);
    }
    let run = run.arg(&t2.rootfs).args(["--", "sh", "-c", script]);
    let mut child = run.spawn();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut output = String::new();
    let mut reply = None;
    while let Ok(line) = inbox.recv_timeout(Duration::from_secs(90)) {
        output.push_str(&line);
        output.push('\n');
        if line == "listening" {
            let target = SocketAddr::new(IpAddr::V4(net.pod_ip), 7002);
            reply = net.node.enter(|| {
                // `listening` comes 0.3 s after the listener was started,
                // not after it is up: a refused connection is tried again
                // (it costs the one-shot listener nothing).
                let mut connected = None;
                runcvm_test_infra::wait_until(Duration::from_secs(10), || {
                    connected = TcpStream::connect_timeout(&target, Duration::from_secs(10)).ok();
                    connected.is_some()
                });
                let mut stream = connected?;
                stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                let mut text = String::new();
                stream.read_to_string(&mut text).ok()?;
                Some(text.trim().to_owned())
            });
        }
    }
    let status = child.wait().unwrap();
    let mut errors = String::new();
    let _ = stderr.read_to_string(&mut errors);
    output.push_str(&errors);
    run.assert_nothing_left();
    (output, reply, status.code())
}

fn both_ways(options: PodNetOptions) {
    let t2 = t2();
    let net = PodNet::build(options);
    let from_guest = node_server(&net, IpAddr::V4(net.node_ip), 7001);
    let from_guest6 = net.node_ip6.map(|ip| node_server(&net, ip, 7003));
    let v6 = net
        .node_ip6
        .map(|ip| format!("echo from-guest6 | nc -w 5 {ip} 7003; ping -c 1 -W 5 {ip} >/dev/null && echo node6-ok;"))
        .unwrap_or_default();
    let script = format!(
        "ping -c 1 -W 5 {gw} >/dev/null && echo gateway-ok; \
         echo from-guest | nc -w 5 {node} 7001; {v6} \
         echo mtu=$(cat /sys/class/net/eth0/mtu) mac=$(cat /sys/class/net/eth0/address); \
         nc -l -p 7002 -e /bin/echo reply-from-guest & sleep 0.3; echo listening; wait",
        gw = net.gateway,
        node = net.node_ip,
    );
    let (output, reply, code) = run_pod_vm(&t2, &net, &[], &script);
    assert!(
        output.contains("gateway-ok\n"),
        "{options:?}: the guest did not reach the gateway:\n{output}"
    );
    assert!(
        output.contains("node-ack\n"),
        "{options:?}: outbound TCP failed:\n{output}"
    );
    assert_eq!(
        from_guest.recv_timeout(Duration::from_secs(5)).ok().as_deref(),
        Some("from-guest")
    );
    if let Some(from_guest6) = from_guest6 {
        assert!(
            output.contains("node6-ok\n"),
            "{options:?}: IPv6 ping failed:\n{output}"
        );
        assert_eq!(
            from_guest6.recv_timeout(Duration::from_secs(5)).ok().as_deref(),
            Some("from-guest6"),
            "{output}"
        );
    }
    let mac = POD_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert!(
        output.contains(&format!("mtu={} mac={mac}\n", options.mtu)),
        "{options:?}:\n{output}"
    );
    assert_eq!(
        reply.as_deref(),
        Some("reply-from-guest"),
        "{options:?}: inbound TCP to the pod IP failed:\n{output}"
    );
    assert!(
        output.contains("runcvm MAC swap: eth0 0a:58:0a:58:00:05 -> "),
        "{output}"
    );
    assert_eq!(code, Some(0), "{output}");
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn bridge_style_pod_both_ways() {
    both_ways(PodNetOptions::new(Style::Bridge));
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn point_to_point_pod_both_ways() {
    both_ways(PodNetOptions::new(Style::PointToPoint));
}

/// CNI's ptp plugin: the guest's routing table is the pod's (the subnet
/// through the gateway, no kernel prefix route, the pod's address as
/// source), where adding the kernel's route too once failed the start.
#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn ptp_pod_both_ways_with_the_pods_routing_table() {
    let options = PodNetOptions::new(Style::Ptp);
    both_ways(options);
    let t2 = t2();
    let net = PodNet::build(options);
    let pod_routes = net.pod.sh_checked("ip -4 route show");
    let (output, _, code) = run_pod_vm(&t2, &net, &[], "ip -4 route show; echo listening");
    assert_eq!(code, Some(0), "{output}");
    // The same routes, whoever made them (`proto`).
    let normal = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut kept = Vec::new();
        let mut at = 0;
        while at < words.len() {
            if words[at] == "proto" {
                at += 2;
            } else {
                kept.push(words[at]);
                at += 1;
            }
        }
        kept.join(" ")
    };
    for line in pod_routes.lines() {
        assert!(
            output.lines().any(|guest| normal(guest) == normal(line)),
            "the guest lacks the pod's route {line:?}:\n{output}"
        );
    }
    let guest: Vec<String> = output.lines().map(normal).collect();
    assert!(
        guest
            .iter()
            .any(|l| l == "10.88.3.0/24 via 10.88.3.1 dev eth0 src 10.88.3.5"),
        "{output}"
    );
    assert!(
        !guest.iter().any(|l| l.starts_with("10.88.3.0/24 dev eth0")),
        "the kernel's prefix route came back:\n{output}"
    );
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn overlay_mtu_dual_stack_pod_both_ways() {
    both_ways(PodNetOptions {
        mtu: 1450,
        dual_stack: true,
        ..PodNetOptions::new(Style::Bridge)
    });
    both_ways(PodNetOptions {
        mtu: 1450,
        dual_stack: true,
        ..PodNetOptions::new(Style::PointToPoint)
    });
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn anti_spoofing_passes_the_swapped_mac_and_drops_a_foreign_one() {
    for style in [Style::Bridge, Style::PointToPoint] {
        let options = PodNetOptions {
            anti_spoof: true,
            ..PodNetOptions::new(style)
        };
        both_ways(options);
        let t2 = t2();
        let net = PodNet::build(options);
        let script = format!(
            "ping -c 1 -W 3 {} >/dev/null && echo gateway-ok || echo gateway-unreachable",
            net.gateway
        );
        let (output, _, _) = run_pod_vm(&t2, &net, &[("RUNCVM_MAC_SWAP", "off")], &script);
        assert!(
            output.contains("gateway-unreachable\n"),
            "{style:?}: without the swap the filter should drop the VM:\n{output}"
        );
        assert!(output.contains("MAC swap disabled by RUNCVM_MAC_SWAP=off"), "{output}");
    }
}

/// The guest's root cannot speak for another address or MAC on the pod
/// network: what leaves `tap-eth0` carries the VM's own.
#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn the_vm_cannot_forge_another_address_or_mac() {
    let t2 = t2();
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let script = format!(
        "ping -c 1 -W 3 {gw} >/dev/null && echo real-ok; \
         ip addr add 10.88.0.77/24 dev eth0; \
         ping -c 2 -W 1 -I 10.88.0.77 {gw} >/dev/null && echo forged-address-through || echo forged-address-dropped; \
         ip addr del 10.88.0.77/24 dev eth0; \
         ip link set dev eth0 address 0a:58:0a:58:00:66; ip neigh flush dev eth0; \
         ping -c 2 -W 1 {gw} >/dev/null && echo forged-mac-through || echo forged-mac-dropped",
        gw = net.gateway
    );
    let (output, _, _) = run_pod_vm(&t2, &net, &[], &script);
    assert!(output.contains("real-ok\n"), "{output}");
    assert!(output.contains("forged-address-dropped\n"), "{output}");
    assert!(output.contains("forged-mac-dropped\n"), "{output}");
}

/// The guest's root speaks on the pod network only as a host with the VM's
/// identity (`vm_filter`): at a bridge neighbour, its Router Advertisement,
/// Redirects, a Neighbor Advertisement for the neighbour's address, a
/// message from a link-local address that is not its own, and DHCP and
/// DHCPv6 server traffic never arrive, while its own neighbour discovery,
/// echo and Neighbor Advertisement do. Each forged message is otherwise a
/// host's (the VM's MAC and addresses), so each is stopped by its own rule.
#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn the_vm_cannot_speak_as_a_router_or_for_its_neighbours() {
    use runcvm_test_infra::capture::{Capture, Seen};
    let t2 = t2();
    let net = PodNet::build(PodNetOptions {
        dual_stack: true,
        ..PodNetOptions::new(Style::Bridge)
    });
    let tools = tempfile::tempdir().unwrap();
    std::fs::copy(
        runcvm_test_infra::built_binary("forge-frames"),
        tools.path().join("forge-frames"),
    )
    .unwrap();
    let forge = "/tools/forge-frames";
    let script = format!(
        "ping -c 1 -W 5 10.88.0.6 >/dev/null && echo v4-ok; \
         ping -c 1 -W 5 fd00:88::6 >/dev/null && echo ndp-ok; \
         {forge} echo6 runcvm-control; {forge} na fd00:88::5; \
         {forge} ra; {forge} redirect fd00:88::6 fd00:88::1; {forge} na fd00:88::6; \
         ip -6 addr add fe80::bad/64 dev eth0 && \
         for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do \
           sleep 0.5; {forge} echo6 forged-link-local fe80::bad 2>/dev/null && echo ll-forged && break; done; \
         {forge} dhcp6-server; {forge} dhcp4-server; {forge} redirect4 10.88.0.6 10.88.0.5; \
         sleep 1; echo forged"
    );
    let capture = Capture::start(&net.neighbour);
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .args(["run", "--network", "pod", "--volume"])
        .arg(format!("{}:/tools:ro", tools.path().display()))
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", &script])
        .run();
    let frames = capture.stop();
    let output = run.stdout_text();
    assert_eq!(run.code, Some(0), "{output}\n{}", run.stderr);
    for line in [
        "v4-ok",
        "ndp-ok",
        "sent echo6",
        "sent na",
        "sent ra",
        "sent redirect",
        "sent dhcp6-server",
        "sent dhcp4-server",
        "sent redirect4",
        "ll-forged",
        "forged",
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "{line:?} missing:\n{output}\n{}",
            run.stderr
        );
    }
    let seen: Vec<Seen> = frames.iter().map(|f| runcvm_test_infra::capture::seen(f)).collect();
    let own: std::net::Ipv6Addr = "fd00:88::5".parse().unwrap();
    let neighbour: std::net::Ipv6Addr = "fd00:88::6".parse().unwrap();
    let carries = |body: &[u8], text: &[u8]| body.windows(text.len()).any(|w| w == text);
    // What a host sends arrives: the capture sees the VM.
    assert!(
        seen.iter()
            .any(|s| matches!(s, Seen::Icmpv6 { kind: 128, body, .. } if carries(body, b"runcvm-control"))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, Seen::Icmpv6 { kind: 136, target: Some(t), .. } if *t == own)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, Seen::Icmpv4 { kind: 8, source, .. } if source.octets() == [10, 88, 0, 5])),
        "{seen:?}"
    );
    // What a router, a server or another host would send does not.
    let forged: Vec<&Seen> = seen
        .iter()
        .filter(|s| match s {
            Seen::Icmpv6 { kind: 134 | 137, .. } => true,
            Seen::Icmpv6 { kind: 136, target, .. } => *target == Some(neighbour),
            Seen::Icmpv6 { kind: 128, body, .. } => carries(body, b"forged-link-local"),
            Seen::Udp6 { source_port } => *source_port == 547,
            Seen::Udp4 { source_port } => *source_port == 67,
            Seen::Icmpv4 { kind, .. } => *kind == 5,
            Seen::Icmpv6 { .. } | Seen::Other => false,
        })
        .collect();
    assert!(forged.is_empty(), "forged frames reached the neighbour: {forged:?}");
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn a_restarted_vm_in_the_same_pod_gets_the_same_identity() {
    let t2 = t2();
    let net = PodNet::build(PodNetOptions::new(Style::PointToPoint));
    let script = format!(
        "echo mac=$(cat /sys/class/net/eth0/address); ip -4 addr show dev eth0 | grep -o 'inet [0-9./]*'; \
         ping -c 1 -W 5 {} >/dev/null && echo gateway-ok",
        net.gateway
    );
    let (first, _, _) = run_pod_vm(&t2, &net, &[], &script);
    let (second, _, _) = run_pod_vm(&t2, &net, &[], &script);
    for output in [&first, &second] {
        assert!(output.contains("mac=0a:58:0a:58:00:05\n"), "{output}");
        assert!(output.contains("inet 10.88.2.3/32\n"), "{output}");
        assert!(output.contains("gateway-ok\n"), "{output}");
    }
    assert!(second.contains("MAC swap (recovered from br-eth0)"), "{second}");
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn only_the_guest_reaches_the_host_identity() {
    let t2 = t2();
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    // A service on 169.254.1.254 in the pod namespace, as the NFS servers
    // are. It answers every connection.
    let identity = SocketAddr::new("169.254.1.254".parse().unwrap(), 2049);
    // The address appears when the launcher makes br-eth0, so listen on all.
    let listener = net.pod.enter(|| TcpListener::bind("0.0.0.0:2049").unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.write_all(b"identity-ack\n");
        }
    });
    // The workload, root in its container, is kept off it by the guest's
    // guard (only the guest's kernel may send there: the NFS volume tests
    // show that it does); the route is there all the same.
    let (output, _, code) = run_pod_vm(
        &t2,
        &net,
        &[],
        "if nc -w 3 169.254.1.254 2049 </dev/null; then echo reached-identity; else echo kept-off; fi; ip route show",
    );
    assert!(
        output.contains("kept-off\n") && !output.contains("identity-ack"),
        "root in the container reached 169.254.1.254:\n{output}"
    );
    assert!(
        output.contains("169.254.1.254 dev eth0"),
        "the guest routes 169.254.1.254 via eth0:\n{output}"
    );
    assert_eq!(code, Some(0));
    // The neighbour, with a route and a static ARP entry for it.
    let bridge_mac = std::process::Command::new("ip")
        .args(["-n", net.pod.name(), "-br", "link", "show", "br-eth0"])
        .output()
        .unwrap();
    let bridge_mac = String::from_utf8_lossy(&bridge_mac.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned();
    net.neighbour.ip("route add 169.254.1.254/32 dev eth0");
    net.neighbour.ip(&format!(
        "neigh add 169.254.1.254 lladdr {bridge_mac} dev eth0 nud permanent"
    ));
    let attempt = net
        .neighbour
        .enter(|| TcpStream::connect_timeout(&identity, Duration::from_secs(3)));
    assert!(attempt.is_err(), "a neighbour pod reached 169.254.1.254");
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn the_guest_gets_the_pods_name_resolution_files() {
    let t2 = t2();
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let (output, _, code) = run_pod_vm(&t2, &net, &[], "cat /etc/resolv.conf");
    let expected = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(
        output.starts_with(&expected),
        "guest:\n{output}\nlauncher's:\n{expected}"
    );
    assert_eq!(code, Some(0));
}

#[test]
#[ignore = "T2: boots real VMs in network namespaces; run scripts/test.sh"]
fn a_missing_tun_device_is_named() {
    let t2 = t2();
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    // /dev/net hidden by an empty tmpfs in a mount namespace of the run's own.
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .args(["run", "--network", "pod"])
        .arg(&t2.rootfs)
        .args(["--", "true"]);
    let inner = run.command();
    let mut wrapped = std::process::Command::new("unshare");
    wrapped
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /dev/net && exec \"$@\"",
            "sh",
        ])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    let out = wrapped.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("cannot create tap-eth0: /dev/net/tun is missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("troubleshooting.md, Checking the network state"),
        "{stderr}"
    );
    run.assert_nothing_left();
}
