//! The live dashboard: one HTML page with its script inline
//! (`dashboard.html`, embedded; no build step, no external assets, works
//! offline) fed by `GET /events`, a server-sent-event stream of one JSON
//! snapshot per second.
//!
//! Each stream runs on a thread of its own, so a slow or stalled browser
//! holds that thread only (its writes block; the workers go on serving).
//! At most [`MAX_SSE`] streams are open at once; more get 503.
//!
//! A snapshot carries the counters (as `/api/stats`) plus what the page
//! shows per second: message rates and the round-trip quantiles of the
//! last interval, computed by the stream's thread from the previous
//! snapshot it sent.

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::http::{self, Request};
use super::metrics::{ERROR_CODES, NETWORKS};
use super::server::{send, Reply};
use super::State;
use crate::session::CloseReason;
use crate::stats::{HistogramSnapshot, StatsSnapshot};

/// The page, served at `/`.
pub(super) const PAGE: &str = include_str!("dashboard.html");

/// Event streams open at once, at most.
pub const MAX_SSE: usize = 16;

/// Time between two snapshots of a stream.
const INTERVAL: Duration = Duration::from_secs(1);

/// Counters and round trips of every shard, read now.
struct Reading {
    at: Instant,
    shards: Vec<(StatsSnapshot, HistogramSnapshot)>,
}

impl Reading {
    fn take(state: &State) -> Reading {
        let shards = (state.shared.stats.iter())
            .map(|s| (s.snapshot(), s.latency.snapshot()))
            .collect();
        Reading {
            at: Instant::now(),
            shards,
        }
    }

    fn total(&self) -> (StatsSnapshot, HistogramSnapshot) {
        let (mut s, mut h) = (StatsSnapshot::default(), HistogramSnapshot::default());
        for (a, b) in &self.shards {
            s.merge(a);
            h.merge(b);
        }
        (s, h)
    }
}

/// `GET /api/stats`: merged and per shard.
pub(super) fn stats_json(state: &State) -> Value {
    let r = Reading::take(state);
    let (s, h) = r.total();
    json!({
        "total": snapshot_json(&s, &h),
        "shards": r.shards.iter().map(|(s, h)| snapshot_json(s, h)).collect::<Vec<_>>(),
        "nodes": links_json(state),
    })
}

/// One snapshot as JSON: every counter, closes by reason, error replies by
/// code, per transport, and the round-trip quantiles since start.
fn snapshot_json(s: &StatsSnapshot, h: &HistogramSnapshot) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    let closed: Map<String, Value> = CloseReason::ALL
        .iter()
        .map(|&r| (r.as_str().to_owned(), s.closed_for(r).into()))
        .collect();
    let errors: Map<String, Value> = ERROR_CODES
        .iter()
        .map(|&(code, f)| (code.to_owned(), f(s).into()))
        .collect();
    let net: Map<String, Value> = NETWORKS
        .iter()
        .zip(&s.net)
        .filter(|(_, n)| n.accepted > 0)
        .map(|(n, v)| (n.as_str().to_owned(), json!(v)))
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("closed".into(), closed.into());
        o.insert("errors".into(), errors.into());
        o.insert("net".into(), net.into());
        o.insert("latency".into(), latency_json(h));
    }
    v
}

fn ms(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |n| {
        json!((n as f64 / 1e6 * 1000.0).round() / 1000.0)
    })
}

fn latency_json(h: &HistogramSnapshot) -> Value {
    let n = h.count();
    json!({
        "count": n,
        "mean_ms": ms((n > 0).then(|| h.sum_ns / n)),
        "p50_ms": ms(h.quantile_ns(0.5)),
        "p90_ms": ms(h.quantile_ns(0.9)),
        "p99_ms": ms(h.quantile_ns(0.99)),
    })
}

/// Per node: its address and, per shard, whether the link is up, its
/// queued bytes and waiting requests.
fn links_json(state: &State) -> Value {
    let slots = state.shared.nodes.slots();
    let n = slots.len().min(crate::stats::MAX_LINK_GAUGES);
    let nodes: Vec<Value> = (0..n)
        .filter(|&l| slots[l].wanted)
        .map(|l| {
            let per: Vec<Value> = (state.shared.stats.iter())
                .map(|s| {
                    let g = &s.links[l];
                    json!({
                        "up": g.up.load(Ordering::Relaxed) == 1,
                        "queued_bytes": g.queued_bytes.load(Ordering::Relaxed),
                        "waiting": g.waiting.load(Ordering::Relaxed),
                    })
                })
                .collect();
            let up = per.iter().filter(|p| p["up"] == true).count();
            json!({ "node": slots[l].addr.to_string(), "shards_up": up, "shards": per })
        })
        .collect();
    nodes.into()
}

/// One frame of the stream: the counters now, and per shard and in total
/// the rates and round trips since `prev`.
fn frame(state: &State, prev: &Reading, now: &Reading) -> Value {
    let dt = now.at.duration_since(prev.at).as_secs_f64().max(1e-3);
    let window = |a: &(StatsSnapshot, HistogramSnapshot),
                  b: &(StatsSnapshot, HistogramSnapshot)| {
        let mut h = b.1.clone();
        for (x, y) in h.counts.iter_mut().zip(&a.1.counts) {
            *x = x.saturating_sub(*y);
        }
        h.sum_ns = h.sum_ns.saturating_sub(a.1.sum_ns);
        let rate = |f: fn(&StatsSnapshot) -> u64| {
            ((f(&b.0).saturating_sub(f(&a.0))) as f64 / dt * 10.0).round() / 10.0
        };
        json!({
            "in_per_s": rate(|s| s.packets_in),
            "out_per_s": rate(|s| s.packets_out),
            "bytes_in_per_s": rate(|s| s.bytes_in),
            "bytes_out_per_s": rate(|s| s.bytes_out),
            "replies": h.count(),
            "p50_ms": ms(h.quantile_ns(0.5)),
            "p99_ms": ms(h.quantile_ns(0.99)),
        })
    };
    let per: Vec<Value> = (prev.shards.iter().zip(&now.shards))
        .map(|(a, b)| window(a, b))
        .collect();
    let total = window(&prev.total(), &now.total());
    let (s, h) = now.total();
    json!({
        "gate": state.info.id,
        "time_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "interval_s": (dt * 1000.0).round() / 1000.0,
        "window": { "total": total, "shards": per },
        "total": snapshot_json(&s, &h),
        "shards": now.shards.iter().map(|(s, h)| snapshot_json(s, h)).collect::<Vec<_>>(),
        "nodes": links_json(state),
    })
}

/// `GET /events`: hands the connection to a stream thread (or 503 when
/// [`MAX_SSE`] are open).
pub(super) fn stream(state: &Arc<State>, req: Request) {
    if state.sse.fetch_add(1, Ordering::SeqCst) >= MAX_SSE {
        state.sse.fetch_sub(1, Ordering::SeqCst);
        let msg = format!("{MAX_SSE} event streams are open already; close one");
        return send(req, Reply::error(503, msg), &[]);
    }
    let st = state.clone();
    let spawned = std::thread::Builder::new()
        .name("ringgate-admin-sse".into())
        .spawn(move || {
            if let Err(e) = run_stream(&st, req.into_stream()) {
                tracing::debug!(error = %e, "event stream ended");
            }
            st.sse.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        // The request went with the closure; the client sees the connection close.
        state.sse.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(error = %e, "cannot start an event stream thread");
    }
}

fn run_stream(state: &State, mut w: TcpStream) -> std::io::Result<()> {
    // The stream writes its own head, then one event a second; each write
    // has `http::WRITE_DEADLINE` (a browser that stopped reading ends its
    // stream) and gives up when the gate stops.
    let write = |w: &mut TcpStream, bytes: &[u8]| {
        http::write_all_by(w, bytes, Instant::now() + http::WRITE_DEADLINE, &state.stop)
    };
    write(
        &mut w,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          Connection: close\r\nX-Accel-Buffering: no\r\n\r\nretry: 2000\n\n",
    )?;
    let mut prev = Reading::take(state);
    let mut next = Instant::now();
    while !state.stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
            continue;
        }
        next += INTERVAL;
        let now = Reading::take(state);
        let event = format!("data: {}\n\n", frame(state, &prev, &now));
        write(&mut w, event.as_bytes())?;
        prev = now;
    }
    Ok(())
}
