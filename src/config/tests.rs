//! Loading tests: the embedded file against `Default`, and one test per kind
//! of error, each checking that the message names file, line, key and reason.

use std::time::Duration;

use super::validate::available_cores;
use super::*;

const ORIGIN: &str = "etc/ringgate.toml";

/// Parses `text` (validated) as if it were `etc/ringgate.toml`.
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, ORIGIN)
}

/// The error `text` gives, as printed.
pub(super) fn error(text: &str) -> String {
    parse(text).expect_err("should be refused").to_string()
}

/// Asserts that `message` contains every one of `parts`.
#[track_caller]
fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

#[test]
fn embedded_default_equals_default() {
    let parsed = parse(DEFAULT_TOML).expect("the embedded default is valid");
    assert!(!parsed.gate.id.is_empty(), "validate generates an id");
    let mut parsed = parsed;
    parsed.gate.id.clear();
    let mut default = Config::default();
    default.validate().unwrap();
    default.gate.id.clear();
    assert_eq!(format!("{parsed:#?}"), format!("{default:#?}"));
    // And Default is already what validate would make of it (bar the id).
    let mut raw = Config::default();
    raw.gate.id = "fixed".into();
    let before = format!("{raw:?}");
    raw.validate().unwrap();
    assert_eq!(format!("{raw:?}"), before);
}

#[test]
fn default_values() {
    let c = parse(DEFAULT_TOML).unwrap();
    assert_eq!(c.gate.name, "gate");
    assert_eq!(c.shards.cores, available_cores());
    assert_eq!(c.shards.count, 0);
    assert_eq!(c.shards.ring_entries, 4096);
    assert_eq!(c.shards.buffer_count, 2048);
    assert_eq!(c.shards.buffer_size, 4096);
    assert_eq!(c.network.tcp.addr, "0.0.0.0:3553".parse().unwrap());
    assert_eq!(c.network.tcp.backlog, 4096);
    assert_eq!(c.network.tcp.max_connections, 5000);
    assert_eq!(c.network.tcp.authorize_timeout, Duration::ZERO);
    assert_eq!(c.network.tcp.max_outbound_bytes, 1 << 20);
    assert_eq!(c.network.tcp.heartbeat.interval, Duration::from_secs(10));
    assert_eq!(c.network.tcp.heartbeat.mechanism, HeartbeatMechanism::Resp);
    assert_eq!(c.packet, PacketOptions::default());
    assert_eq!(c.link.heartbeat_interval, Duration::from_secs(1));
    assert_eq!(c.link.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.link.reconnect_min, Duration::from_millis(100));
    assert_eq!(c.link.reconnect_max, Duration::from_secs(5));
    assert_eq!(c.link.max_frame_bytes, 16 << 20);
    assert_eq!(c.nodes.len(), 1);
    assert_eq!(c.nodes[0].addr, "127.0.0.1:3600".parse().unwrap());
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.admin.enabled);
    assert_eq!(c.admin.addr, "127.0.0.1:3580".parse().unwrap());
    assert_eq!(c.admin.token, "");
}

#[test]
fn empty_file_is_the_default() {
    let mut c = parse("").unwrap();
    c.gate.id.clear();
    assert!(c.gate.id_generated, "validate says it generated the id");
    c.gate.id_generated = false;
    let mut d = Config::default();
    d.gate.id.clear();
    assert_eq!(format!("{c:?}"), format!("{d:?}"));
}

#[test]
fn values_are_read() {
    let c = parse(
        r#"
        [gate]
        id = "gate-7"
        [network.tcp]
        addr = "[::]:4000"
        max_outbound_bytes = 65536
        authorize_timeout = "1m30s"
        [network.tcp.heartbeat]
        interval = "0"
        mechanism = "tick"
        [packet]
        byte_order = "little"
        route_bytes = 4
        seq_bytes = 0
        buffer_bytes = "8KiB"
        heartbeat_time = true
        [[nodes]]
        addr = "10.0.0.1:3600"
        [[nodes]]
        addr = "10.0.0.2:3600"
        [log]
        level = "DEBUG"
        format = "json"
        "#,
    )
    .unwrap();
    assert_eq!(c.gate.id, "gate-7");
    assert_eq!(c.network.tcp.addr, "[::]:4000".parse().unwrap());
    assert_eq!(c.network.tcp.max_outbound_bytes, 65536);
    assert_eq!(c.network.tcp.authorize_timeout, Duration::from_secs(90));
    assert_eq!(c.network.tcp.heartbeat.interval, Duration::ZERO);
    assert_eq!(c.network.tcp.heartbeat.mechanism, HeartbeatMechanism::Tick);
    assert_eq!(
        c.packet,
        PacketOptions {
            byte_order: ByteOrder::Little,
            route_bytes: 4,
            seq_bytes: 0,
            buffer_bytes: 8192,
            heartbeat_time: true,
        }
    );
    assert_eq!(c.nodes.len(), 2, "[[nodes]] replaces the default list");
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn due_style_addr() {
    let c = parse("[network.tcp]\naddr = \":3553\"\n").unwrap();
    assert_eq!(c.network.tcp.addr, "0.0.0.0:3553".parse().unwrap());
    let c = parse("[network.tcp]\naddr = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(c.network.tcp.addr, "127.0.0.1:0".parse().unwrap());
    assert_mentions(
        &error("[network.tcp]\naddr = \"localhost:3553\"\n"),
        &[
            "etc/ringgate.toml:2: ",
            "network.tcp.addr: ",
            "invalid address \"localhost:3553\"",
        ],
    );
}

#[test]
fn shard_count_resolves_to_first_cores() {
    let cores = available_cores();
    let c = parse("[shards]\ncount = 1\n").unwrap();
    assert_eq!(c.shards.cores, vec![cores[0]]);
    assert_eq!(c.shards.count, 0, "count is consumed");
    let c = parse("[shards]\ncount = 0\n").unwrap();
    assert_eq!(c.shards.cores, cores);
    let c = parse("[shards]\nring_entries = 1024\n").unwrap();
    assert_eq!(c.shards.cores, cores, "no count, no cores: every core");
}

#[test]
fn shard_cores_are_taken_as_listed() {
    let last = *available_cores().last().unwrap();
    let c = parse(&format!("[shards]\ncores = [{last}]\n")).unwrap();
    assert_eq!(c.shards.cores, vec![last]);
    // Idempotent: validating again keeps the list.
    let mut again = c.clone();
    again.validate().unwrap();
    assert_eq!(again.shards.cores, vec![last]);
}

#[test]
fn shard_count_and_cores_conflict() {
    assert_mentions(
        &error("[shards]\ncount = 1\ncores = [0]\n"),
        &[
            "etc/ringgate.toml:3: ",
            "shards.cores: ",
            "set either shards.count or shards.cores, not both",
        ],
    );
    let mut c = Config::default();
    c.shards.count = 1;
    let err = c.validate().unwrap_err();
    assert_eq!(err.key(), Some("shards.cores"));
}

#[test]
fn shard_cores_must_exist_and_be_unique() {
    assert_mentions(
        &error("[shards]\ncores = [100000]\n"),
        &["shards.cores: ", "core 100000 is not available"],
    );
    let first = available_cores()[0];
    assert_mentions(
        &error(&format!("[shards]\ncores = [{first}, {first}]\n")),
        &["shards.cores: ", "listed twice"],
    );
    let too_many = available_cores().len() + 1;
    assert_mentions(
        &error(&format!("[shards]\ncount = {too_many}\n")),
        &["etc/ringgate.toml:2: shards.count: ", "shards asked"],
    );
}

#[test]
fn unknown_key_is_named() {
    let e = error("[network.tcp]\naddr = \":3553\"\nmax_conn_num = 10\n");
    assert_mentions(
        &e,
        &[
            "etc/ringgate.toml:3: ",
            "network.tcp.max_conn_num: ",
            "unknown key, expected one of \"addr\", \"backlog\"",
        ],
    );
    assert_mentions(
        &error("[clusterr]\nx = 1\n"),
        &["etc/ringgate.toml:1: ", "clusterr: unknown key"],
    );
    assert_mentions(
        &error("[[nodes]]\naddr = \"127.0.0.1:1\"\nport = 1\n"),
        &["etc/ringgate.toml:3: ", "nodes[0].port: unknown key"],
    );
}

#[test]
fn bad_enum_value_is_named() {
    assert_eq!(
        error("[network.tcp.heartbeat]\nmechanism = \"pong\"\n"),
        "etc/ringgate.toml:2: network.tcp.heartbeat.mechanism: \
         unknown variant \"pong\", expected \"resp\" or \"tick\""
    );
    assert_mentions(
        &error("[packet]\nbyte_order = \"middle\"\n"),
        &["packet.byte_order: ", "\"big\" or \"little\""],
    );
    assert_mentions(
        &error("[log]\nformat = \"xml\"\n"),
        &["etc/ringgate.toml:2: log.format: ", "\"text\" or \"json\""],
    );
    assert_mentions(
        &error("[log]\nlevel = \"verbose\"\n"),
        &[
            "etc/ringgate.toml:2: log.level: ",
            "unknown variant \"verbose\"",
        ],
    );
}

#[test]
fn bad_duration_is_named() {
    assert_mentions(
        &error("[link]\n\nconnect_timeout = \"3parsecs\"\n"),
        &[
            "etc/ringgate.toml:3: ",
            "link.connect_timeout: ",
            "invalid duration \"3parsecs\": unknown unit \"parsecs\"",
        ],
    );
    assert_mentions(
        &error("[network.tcp.heartbeat]\ninterval = 10\n"),
        &["network.tcp.heartbeat.interval: ", "missing unit"],
    );
}

#[test]
fn bad_size_and_type_are_named() {
    assert_mentions(
        &error("[shards]\nbuffer_size = \"4 kilos\"\n"),
        &["etc/ringgate.toml:2: shards.buffer_size: ", "invalid size"],
    );
    assert_mentions(
        &error("[shards]\nbuffer_size = \"8GiB\"\n"),
        &["shards.buffer_size: ", "too large"],
    );
    assert_mentions(
        &error("[network.tcp]\nbacklog = \"many\"\n"),
        &["etc/ringgate.toml:2: network.tcp.backlog: ", "invalid type"],
    );
    assert_mentions(
        &error("[[nodes]]\n"),
        &["nodes[0]: ", "missing field \"addr\""],
    );
}

#[test]
fn out_of_range_is_named() {
    assert_eq!(
        error("[packet]\nroute_bytes = 3\n"),
        "etc/ringgate.toml:2: packet.route_bytes: must be 1, 2 or 4, got 3"
    );
    let cases: &[(&str, &[&str])] = &[
        (
            "[packet]\nseq_bytes = 3",
            &["packet.seq_bytes: must be 0, 1, 2 or 4, got 3"],
        ),
        (
            "[packet]\nbuffer_bytes = 0",
            &["packet.buffer_bytes: must be from 1"],
        ),
        (
            "[packet]\nbuffer_bytes = \"17MiB\"",
            &["packet.buffer_bytes: "],
        ),
        (
            "[shards]\nring_entries = 100",
            &["shards.ring_entries: must be a power of two"],
        ),
        ("[shards]\nring_entries = 32", &["shards.ring_entries: "]),
        (
            "[shards]\nbuffer_count = 1000",
            &["shards.buffer_count: must be a power of two"],
        ),
        (
            "[shards]\nbuffer_size = 100",
            &["shards.buffer_size: must be at least 512"],
        ),
        (
            "[network.tcp]\nmax_connections = 0",
            &["network.tcp.max_connections: "],
        ),
        ("[network.tcp]\nbacklog = 0", &["network.tcp.backlog: "]),
        (
            "[network.tcp]\nmax_outbound_bytes = 100",
            &["network.tcp.max_outbound_bytes: ", "5009"],
        ),
        (
            "[network.tcp.heartbeat]\ninterval = \"5ms\"",
            &["network.tcp.heartbeat.interval: ", "at least 10ms"],
        ),
        (
            "[link]\nreconnect_min = \"10s\"",
            &["link.reconnect_min: must not exceed link.reconnect_max"],
        ),
        (
            "[link]\nheartbeat_interval = \"0s\"",
            &["link.heartbeat_interval: "],
        ),
        (
            "[link]\nmax_frame_bytes = 1000",
            &["link.max_frame_bytes: ", "6024"],
        ),
        ("[gate]\nname = \"\"", &["gate.name: must not be empty"]),
        ("nodes = []", &["etc/ringgate.toml:1: nodes: at least one"]),
        (
            "[[nodes]]\naddr = \"127.0.0.1:0\"",
            &["nodes[0].addr: port 0"],
        ),
    ];
    for (text, parts) in cases {
        let e = error(text);
        assert_mentions(&e, &["etc/ringgate.toml:"]);
        assert_mentions(&e, parts);
    }
}

#[test]
fn duplicate_nodes_point_at_the_second() {
    let e = error("[[nodes]]\naddr = \"127.0.0.1:3600\"\n\n[[nodes]]\naddr = \"127.0.0.1:3600\"\n");
    assert_eq!(
        e,
        "etc/ringgate.toml:5: nodes[1].addr: 127.0.0.1:3600 is listed twice (also nodes[0].addr)"
    );
}

#[test]
fn a_unix_node_path_is_read_and_a_bad_one_names_its_key() {
    let c = parse("[[nodes]]\naddr = \"127.0.0.1:3600\"\nunix = \"/run/ringgate/echo.sock\"\n")
        .unwrap();
    assert_eq!(
        c.nodes[0].unix.as_deref(),
        Some(std::path::Path::new("/run/ringgate/echo.sock"))
    );
    assert_eq!(c.unix_node_paths().len(), 1);
    let long = "x".repeat(108);
    let e = error(&format!(
        "[[nodes]]\naddr = \"127.0.0.1:3600\"\nunix = \"/{long}\"\n"
    ));
    assert_mentions(
        &e,
        &[
            "etc/ringgate.toml:",
            "nodes[0].unix",
            "1 to 107 bytes, got 109",
        ],
    );
    let e = error("[[nodes]]\naddr = \"127.0.0.1:3600\"\nunix = \"\"\n");
    assert_mentions(&e, &["nodes[0].unix", "got 0"]);
    let e = error(
        "[[nodes]]\naddr = \"127.0.0.1:3600\"\nunix = \"/run/a.sock\"\n\
         [[nodes]]\naddr = \"127.0.0.1:3601\"\nunix = \"/run/a.sock\"\n",
    );
    assert_mentions(
        &e,
        &[
            "nodes[1].unix",
            "/run/a.sock is listed twice (also nodes[0].unix)",
        ],
    );
}

#[test]
fn syntax_error_names_file_and_line() {
    let e = parse("[gate]\nname = \"gate\"\nid = \n");
    let err = e.unwrap_err();
    assert!(
        matches!(err, ConfigError::Syntax { line: Some(3), .. }),
        "{err:?}"
    );
    assert_mentions(&err.to_string(), &["etc/ringgate.toml:3: invalid TOML: "]);
    assert_mentions(
        &error("[gate]\nname = \"a\"\nname = \"b\"\n"),
        &["etc/ringgate.toml:3: invalid TOML: ", "duplicate key"],
    );
}

#[test]
fn validate_without_file_names_only_the_key() {
    let mut c = Config::default();
    c.packet.route_bytes = 3;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "packet.route_bytes: must be 1, 2 or 4, got 3"
    );
}

#[test]
fn load_names_the_path() {
    let missing = std::path::Path::new("/nonexistent/ringgate.toml");
    let e = Config::load(missing).unwrap_err().to_string();
    assert_mentions(&e, &["/nonexistent/ringgate.toml: cannot read"]);

    let dir = std::env::temp_dir().join(format!("ringgate-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[packet]\nroute_bytes = 3\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert_mentions(&e, &[&format!("{}:2: packet.route_bytes", path.display())]);
    let e = Config::load_or_default(Some(&dir.join("none.toml"))).unwrap_err();
    assert_mentions(&e.to_string(), &["none.toml: cannot read"]);
    std::fs::write(&path, "[gate]\nname = \"g2\"\n").unwrap();
    let (c, origin) = Config::load_or_default(Some(&path)).unwrap();
    assert_eq!(c.gate.name, "g2");
    assert_eq!(origin, path.display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_or_default_without_path() {
    // Cargo runs tests in the package root, where etc/ringgate.toml exists.
    let (c, origin) = Config::load_or_default(None).unwrap();
    let expected = if std::path::Path::new(DEFAULT_PATH).is_file() {
        DEFAULT_PATH
    } else {
        EMBEDDED_ORIGIN
    };
    assert_eq!(origin, expected);
    assert_eq!(c.gate.name, "gate");
}

#[test]
fn pid_file_is_a_path_or_nothing() {
    assert!(parse("").unwrap().gate.pid.as_os_str().is_empty());
    let c = parse("[gate]\npid = \"./run/ringgate.pid\"\n").unwrap();
    assert_eq!(c.gate.pid, std::path::PathBuf::from("./run/ringgate.pid"));
    assert_mentions(
        &error("[gate]\npid = \"./run/\"\n"),
        &["etc/ringgate.toml:2: gate.pid: ", "must name a file"],
    );
}

#[test]
fn shard_overrides_apply_to_their_shard_only() {
    let cores = available_cores();
    let c = parse(&format!(
        "[shards]\ncount = 1\nbatch_wait = \"20us\"\nbuffer_count = 1024\n\
         [[shards.overrides]]\ncore = {}\nbatch_wait = \"100us\"\nbuffer_size = \"8KiB\"\n",
        cores[0]
    ))
    .unwrap();
    let k = c.shards.knobs(0);
    assert_eq!(k.batch_wait, Duration::from_micros(100));
    assert_eq!(k.buffer_size, 8192);
    assert_eq!(k.buffer_count, 1024, "a knob left out keeps the section's");
    // A shard with no override runs with the section's values.
    let mut two = Config::default();
    two.shards.batch_wait = Duration::from_micros(20);
    two.shards.overrides = vec![ShardOverride {
        shard: Some(0),
        ring_entries: Some(256),
        ..ShardOverride::default()
    }];
    assert_eq!(two.shards.knobs(0).ring_entries, 256);
    assert_eq!(two.shards.knobs(1).ring_entries, 4096);
    assert_eq!(two.shards.knobs(1).batch_wait, Duration::from_micros(20));
}

#[test]
fn shard_overrides_are_checked_like_the_section() {
    assert_mentions(
        &error("[shards]\ncount = 1\n[[shards.overrides]]\nshard = 0\nbatch_wait = \"5ms\"\n"),
        &["shards.overrides[0].batch_wait: ", "at most 1ms"],
    );
    assert_mentions(
        &error("[shards]\ncount = 1\n[[shards.overrides]]\nshard = 3\n"),
        &[
            "shards.overrides[0].shard: ",
            "shard 3 does not exist (1 shards)",
        ],
    );
    assert_mentions(
        &error("[shards]\ncount = 1\n[[shards.overrides]]\nring_entries = 64\n"),
        &["shards.overrides[0]: ", "exactly one of `shard`"],
    );
    assert_mentions(
        &error("[shards]\ncount = 1\n[[shards.overrides]]\nshard = 0\n[[shards.overrides]]\nshard = 0\n"),
        &["shards.overrides[1]: ", "already overridden by shards.overrides[0]"],
    );
    assert_mentions(
        &error("[shards]\ncount = 1\n[[shards.overrides]]\ncore = 100000\n"),
        &["shards.overrides[0].core: ", "no shard runs on core 100000"],
    );
    assert_mentions(
        &error("[shards]\ncount = 1\n[[shards.overrides]]\nshard = 0\nbusy_poll = \"11ms\"\n"),
        &["shards.overrides[0].busy_poll: ", "at most 10ms"],
    );
    assert_mentions(
        &error("[shards]\nbatch_wait = \"2ms\"\n"),
        &["shards.batch_wait: ", "at most 1ms"],
    );
    assert_mentions(
        &error("[shards]\ncontrol_cores = [100000]\n"),
        &["shards.control_cores: ", "core 100000 is not available"],
    );
}
