//! The dashboard as a person sees it: a real headless Chromium opens the
//! admin page while a load runs, and the numbers it shows must match the
//! load (tests/common/dashboard_check.py reads them over the DevTools
//! protocol and takes a screenshot).
//!
//! The screenshot goes to a temp file; with `RINGGATE_UPDATE_SCREENSHOT=1`
//! it replaces `docs/dashboard.png` (the one README shows).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::admin::*;
use common::*;

#[test]
fn headless_chromium_reads_the_live_dashboard() {
    let chromium =
        std::env::var("RINGGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    let s = AdminStack::start(|_| {});
    // 4 clients, one request every ~20 ms each: ~200 requests/s in all.
    const CLIENTS: usize = 4;
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| s.client()).collect();
    clients[0].send(LOGIN, 1, b"4242");
    clients[0].recv_data().unwrap();
    let load = Load::start(clients, Duration::from_millis(20));

    let shot = std::env::temp_dir().join(format!("ringgate-dashboard-{}.png", std::process::id()));
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/dashboard_check.py"))
        .arg("--url")
        .arg(format!("http://{}/", s.admin_addr()))
        .args(["--connections", &CLIENTS.to_string(), "--timeout", "20"])
        .arg("--chromium")
        .arg(&chromium)
        .arg("--screenshot")
        .arg(&shot);
    let (ok, out) = run_with_deadline(
        cmd,
        Duration::from_secs(25),
        "scripts/test.sh installs python3 and websockets",
    );
    let (requests, secs) = load.stop();
    assert!(ok, "dashboard_check.py failed:\n{out}");
    let page: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap_or(""))
            .unwrap_or_else(|e| panic!("no JSON from dashboard_check.py ({e}):\n{out}"));
    let num = |id: &str| -> f64 {
        let t = page["cards"][id]
            .as_str()
            .unwrap_or_else(|| panic!("no #{id} in {page}"));
        t.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("#{id} = {t:?}"))
    };

    assert_eq!(page["status"], "● live", "{page}");
    assert_eq!(num("total-connections"), CLIENTS as f64);
    assert_eq!(num("total-bound"), 1.0);
    // The page's rate is over its last second; the load's over its run.
    let load_rate = requests as f64 / secs;
    let shown = num("total-in-rate");
    assert!(
        shown > load_rate * 0.4 && shown < load_rate * 2.0,
        "page shows {shown} msg/s in, the load ran at {load_rate:.0}/s"
    );
    let out_rate = num("total-out-rate");
    assert!(out_rate > 0.0, "{page}");
    let (p50, p99) = (num("total-p50"), num("total-p99"));
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 < 1000.0,
        "p50 {p50} ms, p99 {p99} ms"
    );
    // Cumulative packets: everything the page counted was sent, and the
    // load ran on after the page was read.
    let packets = num("total-packets-in");
    assert!(
        packets >= 1.0 && packets <= (requests + 1) as f64,
        "{packets} of {requests}"
    );
    let rows = page["shards"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        s.cfg.shards.cores.len() + 1,
        "a row per shard and a total"
    );
    let per: u64 = (rows.iter())
        .filter(|r| r["shard"] != "total")
        .map(|r| r["connections"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(per, CLIENTS as u64, "shard rows add up");
    assert_eq!(page["nodes"][0]["up"], "true", "{page}");
    assert_eq!(page["nodes"][0]["node"], s.node.local_addr().to_string());

    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("RINGGATE_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, &png).expect("write docs/dashboard.png");
    }
    let _ = std::fs::remove_file(&shot);
}
