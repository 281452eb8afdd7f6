//! The volume server's own figures, in-process over loopback (root: the
//! server takes on the caller's credentials; `scripts/bench.sh` runs it):
//!   - create/delete churn on tmpfs (an emptyDir of medium Memory): the
//!     process's RSS every tenth of `BENCH_NFS_CYCLES` (default 1,000,000)
//!     CREATE + REMOVE cycles; the handle table is bounded, so it stays flat;
//!   - listing a folder of `BENCH_NFS_ENTRIES` (default 20,000) files page
//!     by page with READDIR and with READDIRPLUS (the guest's first `ls`
//!     of a folder): time per entry.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/client.rs"]
mod client;

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;
use runcvm_nfs::Export;
use std::time::Instant;

fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn name(text: &str) -> filename3<'static> {
    filename3(Opaque::owned(text.as_bytes().to_vec()))
}

fn main() {
    let cycles = from_env("BENCH_NFS_CYCLES", 1_000_000);
    let entries = from_env("BENCH_NFS_ENTRIES", 20_000);
    let scratch = tempfile::tempdir_in("/dev/shm").unwrap();
    let export = Export {
        name: "/data".into(),
        path: scratch.path().to_owned(),
        read_only: false,
    };
    let mut client = client::Client::connect(vec![export]);
    let root = client.mount("/data");

    println!("volume server: {cycles} CREATE + REMOVE cycles on tmpfs");
    let start = Instant::now();
    let step = (cycles / 10).max(1);
    let start_rss = rss_kib();
    let mut first = 0;
    let mut last = start_rss;
    for cycle in 0..cycles {
        let file = format!("f{}", cycle % 1000);
        client.create(&root, &file).unwrap();
        let args = REMOVE3args {
            object: diropargs3 {
                dir: root.clone(),
                name: name(&file),
            },
        };
        assert!(matches!(client.nfs::<REMOVE3res>(12, &args), Nfs3Result::Ok(_)));
        if (cycle + 1) % step == 0 {
            last = rss_kib();
            if first == 0 {
                first = last;
            }
            println!("  after {:>9} cycles: RSS {last} KiB", cycle + 1);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "  {:.0} cycles/s; RSS {start_rss} KiB before, {first} KiB after the first tenth, {last} KiB at the end ({:+.1}% over the last nine tenths)",
        cycles as f64 / seconds,
        (last as f64 - first as f64) * 100.0 / first.max(1) as f64
    );

    let folder = scratch.path().join("many");
    std::fs::create_dir(&folder).unwrap();
    for i in 0..entries {
        std::fs::write(folder.join(format!("entry-{i:06}")), b"").unwrap();
    }
    // Listings of a folder changed within the last second are not kept.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dir = client.lookup(&root, "many").unwrap();
    let readdir = |client: &mut client::Client, cookie, cookieverf| {
        let args = READDIR3args {
            dir: dir.clone(),
            cookie,
            cookieverf,
            count: 32 * 1024,
        };
        let Nfs3Result::Ok(ok) = client.nfs::<READDIR3res>(16, &args) else {
            panic!("READDIR failed")
        };
        let last = ok.reply.entries.0.last().map(|e| e.cookie);
        (ok.reply.entries.0.len(), last, ok.cookieverf, ok.reply.eof)
    };
    time_listing(&mut client, "READDIR", entries, readdir);
    // READDIRPLUS, as the guest's first listing of a folder asks: each entry
    // with its attributes and handle, pages of 64 KiB (the server's dtpref).
    let readdirplus = |client: &mut client::Client, cookie, cookieverf| {
        let args = READDIRPLUS3args {
            dir: dir.clone(),
            cookie,
            cookieverf,
            dircount: 64 * 1024,
            maxcount: 64 * 1024,
        };
        let Nfs3Result::Ok(ok) = client.nfs::<READDIRPLUS3res>(17, &args) else {
            panic!("READDIRPLUS failed")
        };
        let last = ok.reply.entries.0.last().map(|e| e.cookie);
        (ok.reply.entries.0.len(), last, ok.cookieverf, ok.reply.eof)
    };
    time_listing(&mut client, "READDIRPLUS", entries, readdirplus);
}

/// One page: how many entries, the last one's cookie, the verifier, the end.
type Page = (usize, Option<u64>, cookieverf3, bool);

/// Lists a folder of `entries` page by page with `page` and prints the time.
fn time_listing(
    client: &mut client::Client,
    what: &str,
    entries: usize,
    page: impl Fn(&mut client::Client, u64, cookieverf3) -> Page,
) {
    let start = Instant::now();
    let (mut cookie, mut cookieverf, mut listed, mut pages) = (0, cookieverf3::default(), 0, 0);
    loop {
        let (count, last, verifier, eof) = page(client, cookie, cookieverf);
        pages += 1;
        listed += count;
        cookie = last.unwrap_or(cookie);
        cookieverf = verifier;
        if eof {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(listed, entries);
    println!(
        "volume server: {what} of {entries} entries in {pages} pages: {:.1} ms, {:.2} µs per entry",
        seconds * 1e3,
        seconds * 1e6 / entries as f64
    );
}
