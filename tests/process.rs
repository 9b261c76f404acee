//! The `ringgate` process as an operator runs it: its pid file, its logs
//! (rotated files, no colour codes off a terminal), start-up errors in
//! `[log]` and `[gate] pid`, and `ringgate check-host`.
//!
//! Each gate listens on free 127.0.0.1 ports, with one shard, no WebSocket
//! listener and a `[[nodes]]` entry nobody serves (the gate runs without it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringgate-process-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Writes `dir/gate.toml`: a one-shard gate on a free port, then `extra`
/// (which starts with a table header). Returns the file and the port.
fn config(dir: &Path, extra: &str) -> (PathBuf, u16) {
    let (port, node) = (free_port(), free_port());
    let text = format!(
        "[shards]\ncount = 1\n[network.tcp]\naddr = \"127.0.0.1:{port}\"\n\
         [network.ws]\nenabled = false\n[admin]\nenabled = false\n\
         [[nodes]]\naddr = \"127.0.0.1:{node}\"\n{extra}"
    );
    let path = dir.join("gate.toml");
    std::fs::write(&path, text).unwrap();
    (path, port)
}

/// A child killed (and reaped) if the test ends early.
struct Gate(Child);

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Gate {
    fn start(cfg: &Path, stdout: Stdio, stderr: Stdio) -> Gate {
        let child = Command::new(BIN)
            .arg("--config")
            .arg(cfg)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Gate(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then the exit status within 10 s.
    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) reads no memory of ours; the pid is our unreaped child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the gate did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `cond` every 20 ms for up to 10 s.
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn run(args: &[&str], cfg: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_pid_file_holds_the_pid_and_is_removed_after_sigterm() {
    let d = dir("pid");
    let pid_file = d.join("run/ringgate.pid");
    let (cfg, port) = config(&d, &format!("[gate]\npid = {:?}\n", pid_file));
    let mut gate = Gate::start(&cfg, Stdio::null(), Stdio::null());
    wait_for("the gate to listen", || listening(port));
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written, format!("{}\n", gate.pid()));
    assert!(gate.terminate().success());
    assert!(!pid_file.exists(), "the pid file outlived the gate");
}

#[test]
fn a_second_start_on_the_same_pid_file_is_refused() {
    let d = dir("twice");
    let pid_file = d.join("ringgate.pid");
    let extra = format!("[gate]\npid = {:?}\n", pid_file);
    let (cfg, port) = config(&d, &extra);
    let mut first = Gate::start(&cfg, Stdio::null(), Stdio::null());
    wait_for("the first gate to listen", || listening(port));

    let d2 = dir("twice-second");
    let (cfg2, _) = config(&d2, &extra);
    let out = run(&[], &cfg2);
    assert!(!out.status.success(), "the second gate started");
    let err = text(&out.stderr);
    assert!(
        err.contains(&pid_file.display().to_string())
            && err.contains(&format!("already running as pid {}", first.pid())),
        "{err}"
    );
    // The first gate's file is untouched.
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written, format!("{}\n", first.pid()));
    assert!(first.terminate().success());
}

#[test]
fn a_stale_pid_file_is_replaced_with_a_warning() {
    let d = dir("stale");
    let pid_file = d.join("ringgate.pid");
    // The pid of a process that has exited (and been reaped).
    let mut gone = Command::new("true").spawn().unwrap();
    let old = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{old}\n")).unwrap();
    let log = d.join("console.log");
    let (cfg, port) = config(&d, &format!("[gate]\npid = {:?}\n", pid_file));
    let sink = std::fs::File::create(&log).unwrap();
    let mut gate = Gate::start(&cfg, Stdio::null(), Stdio::from(sink));
    wait_for("the gate to listen", || listening(port));
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written, format!("{}\n", gate.pid()));
    assert!(gate.terminate().success());
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        console.contains("replaced a stale pid file")
            && console.contains(&format!("no process {old} is running")),
        "{console}"
    );
    assert!(!pid_file.exists());
}

/// Names and contents of the files in `dir`.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn file_logs_rotate_at_max_size_without_colour_codes() {
    let d = dir("rotate");
    let logs = d.join("logs");
    // Debug level with a node link retried every 10 ms writes a line per
    // attempt: 4 KiB files fill within a second.
    let extra = format!(
        "[link]\nreconnect_min = \"10ms\"\nreconnect_max = \"10ms\"\n\
         [log]\nlevel = \"debug\"\nterminals = [\"file\"]\n\
         [log.file]\npath = {:?}\nformat = \"text\"\nmax_size = \"4KiB\"\n",
        logs.join("gate.log")
    );
    let (cfg, port) = config(&d, &extra);
    let mut gate = Gate::start(&cfg, Stdio::null(), Stdio::null());
    wait_for("the gate to listen", || listening(port));
    wait_for("three rotated files", || {
        std::fs::read_dir(&logs).map_or(0, |r| r.count()) >= 4
    });
    assert!(gate.terminate().success());
    let got = files(&logs);
    assert!(
        got.len() >= 4,
        "{:?}",
        got.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in &got {
        assert!(name.starts_with("gate.log"), "{name}");
        assert!(!bytes.contains(&0x1b), "{name} has an escape sequence");
        if name != "gate.log" {
            assert!(
                bytes.len() >= 4096 && bytes.len() < 4096 + 1024,
                "{name}: {}",
                bytes.len()
            );
            assert!(bytes.ends_with(b"\n"), "{name} ends mid-line");
        }
    }
    let current = &got.iter().find(|f| f.0 == "gate.log").unwrap().1;
    assert!(
        text(current).contains("stopped"),
        "the last lines are flushed at exit"
    );
}

#[test]
fn console_logs_redirected_to_a_file_have_no_escape_bytes() {
    let d = dir("console");
    let out = d.join("out.log");
    let (cfg, port) = config(&d, "[log]\nlevel = \"debug\"\nformat = \"text\"\n");
    let sink = std::fs::File::create(&out).unwrap();
    let mut gate = Gate::start(
        &cfg,
        Stdio::from(sink.try_clone().unwrap()),
        Stdio::from(sink),
    );
    wait_for("the gate to listen", || listening(port));
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert!(gate.terminate().success());
    let bytes = std::fs::read(&out).unwrap();
    let text = text(&bytes);
    assert!(
        text.contains("ringgate started") && text.contains("draining"),
        "{text}"
    );
    assert!(!bytes.contains(&0x1b), "escape sequences in {text:?}");
}

#[test]
fn bad_log_and_pid_settings_fail_at_start_naming_file_and_key() {
    let d = dir("bad");
    for (extra, key, more) in [
        (
            "[log]\nterminals = [\"console\", \"syslog\"]\n",
            "log.terminals[1]",
            "\"file\"",
        ),
        (
            "[log.file]\nmax_size = \"100\"\n",
            "log.file.max_size",
            "1024",
        ),
        (
            "[log.file]\nrotation = \"week\"\n",
            "log.file.rotation",
            "\"day\"",
        ),
        (
            "[log]\nstack_level = \"fatal\"\n",
            "log.stack_level",
            "\"off\"",
        ),
        ("[gate]\npid = \"run/\"\n", "gate.pid", "must name a file"),
        // Valid in form, but nothing can be created there:
        (
            "[gate]\npid = \"/proc/version/gate.pid\"\n",
            "gate.pid",
            "/proc/version/gate.pid",
        ),
        (
            "[log]\nterminals = [\"file\"]\n[log.file]\npath = \"/proc/version/gate.log\"\n",
            "log.file.path",
            "/proc/version/gate.log",
        ),
    ] {
        let (cfg, _) = config(&d, extra);
        let out = run(&[], &cfg);
        assert!(!out.status.success(), "{extra} was accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains(&cfg.display().to_string()) && err.contains(key) && err.contains(more),
            "{extra}: {err}"
        );
    }
}

#[test]
fn check_host_prints_one_line_per_check_and_its_verdict() {
    let d = dir("check-host");
    let (cfg, _) = config(&d, "");
    let out = run(&["check-host"], &cfg);
    let stdout = text(&out.stdout);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{code:?} {}",
        text(&out.stderr)
    );
    let names = [
        "kernel",
        "open files",
        "somaxconn",
        "local ports",
        "tcp memory",
        "socket buffers",
        "shard cores",
        "nic irqs",
    ];
    let mut changes = 0;
    for name in names {
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.get(8..).is_some_and(|rest| rest.starts_with(name)))
            .collect();
        assert_eq!(lines.len(), 1, "{name}: {stdout}");
        let status = lines[0].split_whitespace().next().unwrap();
        assert!(["OK", "CHANGE", "SKIP"].contains(&status), "{}", lines[0]);
        if status == "CHANGE" {
            changes += 1;
            assert!(lines[0].contains("=> fix: "), "{}", lines[0]);
        }
    }
    assert_eq!(code == Some(1), changes > 0, "{stdout}");
    assert!(stdout.contains(&cfg.display().to_string()), "{stdout}");
}
