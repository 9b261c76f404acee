//! `GET /metrics`: every shard's counters, gauges and round-trip histogram
//! in Prometheus' text format, read from the shards' atomics at scrape
//! time (a [`Collector`]) and labelled `shard`; per transport also
//! `network`, per close reason `reason`, per error reply `code`, per node
//! link `node`. Nothing is kept between scrapes.
//!
//! Counter names get `_total` from the encoder. `docs/admin.md` lists them.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::State;
use crate::connection::Network;
use crate::session::CloseReason;
use crate::stats::{StatsSnapshot, LATENCY_BOUNDS_NS, MAX_LINK_GAUGES};

/// The transports, in `Network as usize` order.
pub(super) const NETWORKS: [Network; 8] = [
    Network::Tcp,
    Network::Tls,
    Network::Ws,
    Network::Wss,
    Network::Mqtt,
    Network::Mqtts,
    Network::MqttWs,
    Network::MqttWss,
];

type Labels = Vec<(&'static str, String)>;
type Fmt = Result<(), std::fmt::Error>;

/// One scrape's text.
pub(super) fn render(state: &Arc<State>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(state.clone())));
    let mut out = String::with_capacity(32 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

#[derive(Debug)]
struct Scrape(Arc<State>);

/// Reads one value out of a snapshot.
type Read = fn(&StatsSnapshot) -> u64;

/// A plain counter per shard: name, help, and how to read it.
type PerShard = (&'static str, &'static str, Read);

/// Counters with only the `shard` label.
const SHARD_COUNTERS: &[PerShard] = &[
    (
        "ringgate_connections_refused",
        "Connections refused at max_connections.",
        |s| s.refused,
    ),
    (
        "ringgate_accept_errors",
        "accept(2) failures (e.g. EMFILE); each pauses accepting 100 ms.",
        |s| s.accept_errors,
    ),
    (
        "ringgate_connections_refused_per_ip",
        "Connections refused at limits.max_connections_per_ip.",
        |s| s.refused_per_ip,
    ),
    (
        "ringgate_connections_refused_accept_rate",
        "Connections closed on accept over limits.accepts_per_sec.",
        |s| s.refused_accept_rate,
    ),
    (
        "ringgate_connections_refused_handshakes",
        "Connections closed on accept over limits.max_handshakes.",
        |s| s.refused_handshakes,
    ),
    (
        "ringgate_packets_in",
        "Data packets received from clients.",
        |s| s.packets_in,
    ),
    (
        "ringgate_packets_out",
        "Data packets queued to clients (replies, pushes, error replies).",
        |s| s.packets_out,
    ),
    (
        "ringgate_heartbeats_in",
        "Heartbeats received from clients.",
        |s| s.heartbeats_in,
    ),
    (
        "ringgate_node_messages_sent",
        "Messages sent to nodes.",
        |s| s.to_node,
    ),
    (
        "ringgate_node_messages_received",
        "Messages received from nodes.",
        |s| s.from_node,
    ),
    ("ringgate_node_calls", "Calls received from nodes.", |s| {
        s.calls
    }),
    (
        "ringgate_node_link_failures",
        "Node link connect attempts that failed.",
        |s| s.link_failures,
    ),
    (
        "ringgate_node_link_drops",
        "Node links that went down after being up.",
        |s| s.link_drops,
    ),
    (
        "ringgate_node_links_hung",
        "Links closed because their node stopped answering.",
        |s| s.links_hung,
    ),
    (
        "ringgate_late_replies",
        "Node replies to requests that had already ended (dropped).",
        |s| s.late_replies,
    ),
    (
        "ringgate_push_misses",
        "Pushes for sessions that no longer exist here.",
        |s| s.push_misses,
    ),
    ("ringgate_events_sent", "Events sent to nodes.", |s| {
        s.events_sent
    }),
    (
        "ringgate_events_dropped",
        "Events not sent because the node's link queue was full.",
        |s| s.events_dropped,
    ),
    (
        "ringgate_cross_shard_sent",
        "Messages sent to other shards.",
        |s| s.cross_shard_sent,
    ),
    (
        "ringgate_cross_shard_dropped",
        "Messages to other shards dropped (inbox and backlog full).",
        |s| s.cross_shard_dropped,
    ),
    (
        "ringgate_ws_upgrades",
        "WebSocket upgrades accepted.",
        |s| s.ws_upgrades,
    ),
    ("ringgate_ws_rejected", "WebSocket upgrades refused.", |s| {
        s.ws_rejected
    }),
    (
        "ringgate_tls_handshakes",
        "TLS handshakes completed.",
        |s| s.tls_handshakes,
    ),
    ("ringgate_tls_failures", "TLS errors.", |s| s.tls_failures),
    (
        "ringgate_mqtt_errors",
        "MQTT packets refused or answered with an error.",
        |s| s.mqtt_errors,
    ),
    (
        "ringgate_recv_no_buffers",
        "Multishot receives that ran out of provided buffers.",
        |s| s.recv_no_buffers,
    ),
    (
        "ringgate_fleet_kicks",
        "Sessions closed because their user was bound on another gate.",
        |s| s.fleet_kicks,
    ),
    (
        "ringgate_fleet_notes_dropped",
        "Bind notes the fleet agent's full queue could not take.",
        |s| s.fleet_notes_dropped,
    ),
    ("ringgate_loop_turns", "Event-loop turns.", |s| s.loop_turns),
    (
        "ringgate_ring_submissions",
        "Operations submitted to the shard's io_uring.",
        |s| s.ring_submissions,
    ),
    (
        "ringgate_ring_completions",
        "Completions reaped from the shard's io_uring.",
        |s| s.ring_completions,
    ),
];

/// Gauges with only the `shard` label.
const SHARD_GAUGES: &[PerShard] = &[
    (
        "ringgate_sessions_bound",
        "Sessions with a bound user.",
        |s| s.bound,
    ),
    ("ringgate_node_links_up", "Node links up.", |s| s.links_up),
    (
        "ringgate_outbound_queue_bytes",
        "Bytes queued or in flight towards clients.",
        |s| s.outbound_bytes,
    ),
    (
        "ringgate_cross_shard_inbox_depth",
        "Messages waiting in the shard's inbox.",
        |s| s.inbox_depth,
    ),
    (
        "ringgate_cross_shard_backlog",
        "Messages held back for other shards' full inboxes.",
        |s| s.cross_shard_backlog,
    ),
    (
        "ringgate_node_links_queued_bytes",
        "Bytes waiting to be written to node links, all links of the shard.",
        |s| s.link_queued_bytes,
    ),
    (
        "ringgate_requests_waiting",
        "Requests waiting for a node's reply.",
        |s| s.requests_waiting,
    ),
    (
        "ringgate_handshakes",
        "Connections in their handshake (TLS, WebSocket upgrade, MQTT CONNECT).",
        |s| s.handshakes,
    ),
];

/// Error replies the gate sent itself, by the `code` label.
pub(super) const ERROR_CODES: &[(&str, Read)] = &[
    ("no_route", |s| s.no_route),
    ("node_down", |s| s.node_down + s.requests_orphaned),
    ("timeout", |s| s.request_timeouts),
    ("busy", |s| s.link_busy),
    ("too_large", |s| s.too_large),
    ("unauthorized", |s| s.unauthorized),
    ("forbidden", |s| s.forbidden),
    ("not_bound", |s| s.not_bound),
    ("rate_limited", |s| s.rate_limited),
    ("inflight_full", |s| s.inflight_full),
];

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let st = &self.0;
        let snaps: Vec<StatsSnapshot> = st.shared.stats.iter().map(|s| s.snapshot()).collect();
        let shard = |i: usize| ("shard", i.to_string());
        let info: Labels = vec![
            ("gate_id", st.info.id.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ];
        gauge(
            &mut enc,
            "ringgate_info",
            "The gate's id and version (always 1).",
            [(info, 1)],
        )?;
        let started = st.info.started_ms / 1000;
        let none: Labels = Vec::new();
        gauge(
            &mut enc,
            "ringgate_start_time_seconds",
            "When the gate started (unix seconds).",
            [(none, started)],
        )?;
        counter(
            &mut enc,
            "ringgate_admin_accept_errors",
            "accept(2) failures on the admin port (e.g. EMFILE); each pauses its accepting 100 ms.",
            [(
                Vec::new(),
                st.accept_errors.load(std::sync::atomic::Ordering::Relaxed),
            )],
        )?;
        self.encode_connections(&mut enc, &snaps)?;
        for &(name, help, f) in SHARD_COUNTERS {
            let rows = snaps
                .iter()
                .enumerate()
                .map(|(i, s)| (vec![shard(i)], f(s)));
            counter(&mut enc, name, help, rows)?;
        }
        for &(name, help, f) in SHARD_GAUGES {
            let rows = snaps
                .iter()
                .enumerate()
                .map(|(i, s)| (vec![shard(i)], f(s)));
            gauge(&mut enc, name, help, rows)?;
        }
        let rows = snaps.iter().enumerate().flat_map(|(i, s)| {
            CloseReason::ALL.iter().map(move |&r| {
                (
                    vec![shard(i), ("reason", r.as_str().to_owned())],
                    s.closed_for(r),
                )
            })
        });
        counter(
            &mut enc,
            "ringgate_closes",
            "Connections closed, by reason.",
            rows,
        )?;
        let rows = snaps.iter().enumerate().flat_map(|(i, s)| {
            ERROR_CODES
                .iter()
                .map(move |&(code, f)| (vec![shard(i), ("code", code.to_owned())], f(s)))
        });
        counter(
            &mut enc,
            "ringgate_error_replies",
            "Requests the gate answered itself with an error code.",
            rows,
        )?;
        self.encode_links(&mut enc)?;
        self.encode_latency(&mut enc)
    }
}

impl Scrape {
    /// Per shard and transport: open, accepted, bytes. Transports no
    /// shard has accepted on are left out.
    fn encode_connections(&self, enc: &mut DescriptorEncoder, snaps: &[StatsSnapshot]) -> Fmt {
        let used: Vec<usize> = (0..NETWORKS.len())
            .filter(|&n| n == 0 || snaps.iter().any(|s| s.net[n].accepted > 0))
            .collect();
        let rows = |f: fn(&crate::stats::NetSnapshot) -> u64| {
            let used = &used;
            snaps.iter().enumerate().flat_map(move |(i, s)| {
                used.iter().map(move |&n| {
                    let labels = vec![
                        ("shard", i.to_string()),
                        ("network", NETWORKS[n].as_str().to_owned()),
                    ];
                    (labels, f(&s.net[n]))
                })
            })
        };
        gauge(
            enc,
            "ringgate_connections",
            "Client connections open, by the transport of the listener that accepted them.",
            rows(|n| n.open),
        )?;
        counter(
            enc,
            "ringgate_connections_accepted",
            "Client connections accepted.",
            rows(|n| n.accepted),
        )?;
        counter(
            enc,
            "ringgate_bytes_received",
            "Bytes read from client sockets (TLS and WebSocket framing included).",
            rows(|n| n.bytes_in),
        )?;
        counter(
            enc,
            "ringgate_bytes_sent",
            "Bytes written to client sockets.",
            rows(|n| n.bytes_out),
        )
    }

    /// Per shard and node link: up, queued bytes, waiting requests.
    fn encode_links(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let st = &self.0;
        let slots = st.shared.nodes.slots();
        let n = slots.len().min(MAX_LINK_GAUGES);
        let rows = |f: fn(&crate::stats::LinkGauge) -> u64| {
            let slots = &slots;
            st.shared.stats.iter().enumerate().flat_map(move |(i, s)| {
                (0..n).map(move |l| {
                    let labels = vec![
                        ("shard", i.to_string()),
                        ("node", slots[l].addr.to_string()),
                    ];
                    (labels, f(&s.links[l]))
                })
            })
        };
        use std::sync::atomic::Ordering::Relaxed;
        gauge(
            enc,
            "ringgate_node_link_up",
            "1 while the shard's link to the node is up.",
            rows(|g| g.up.load(Relaxed)),
        )?;
        gauge(
            enc,
            "ringgate_node_link_queue_bytes",
            "Bytes waiting to be written to the node.",
            rows(|g| g.queued_bytes.load(Relaxed)),
        )?;
        gauge(
            enc,
            "ringgate_node_link_waiting_requests",
            "Requests on the link waiting for their reply.",
            rows(|g| g.waiting.load(Relaxed)),
        )
    }

    /// The round-trip histogram per shard.
    fn encode_latency(&self, enc: &mut DescriptorEncoder) -> Fmt {
        let mut m = enc.encode_descriptor(
            "ringgate_request_duration_seconds",
            "Round trip through the gate of requests answered by their node: from reading the request to reading its reply.",
            None,
            MetricType::Histogram,
        )?;
        for (i, s) in self.0.shared.stats.iter().enumerate() {
            let h = s.latency.snapshot();
            let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_NS
                .iter()
                .zip(&h.counts)
                .map(|(&b, &c)| (b as f64 / 1e9, c))
                .collect();
            buckets.push((f64::INFINITY, h.counts[h.counts.len() - 1]));
            let labels: Labels = vec![("shard", i.to_string())];
            let fam = m.encode_family(&labels)?;
            let mut fam = fam;
            fam.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &buckets, None)?;
        }
        Ok(())
    }
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Fmt {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Fmt {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}
