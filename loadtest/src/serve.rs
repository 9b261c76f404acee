//! `serve-echo`: the one-hop ceiling. A due-format echo server with no gate
//! in between, built like a gate shard so the comparison is fair: one thread
//! per core, each with its own `SO_REUSEPORT` listener and epoll loop (mio),
//! a thread-wide read buffer (a connection keeps only a partial frame), every
//! reply of one read batch encoded into one buffer and sent in one write.
//!
//! Each data packet comes back with the same header ext, route, seq and
//! payload; each heartbeat is answered with a heartbeat (carrying the unix
//! time with `--heartbeat-time`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::BytesMut;
use clap::Args;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use ringgate::codec::{self, Frame, PacketOptions};
use socket2::{Domain, Protocol, Socket, Type};

use crate::args::{parse_duration, PacketArgs, ThreadArgs};
use crate::wire::{self, ReadEnd};

/// Token of the listener; connections use their slab index.
const LISTENER: Token = Token(usize::MAX - 1);
/// Replies buffered for a slow reader before its reads pause.
const MAX_PENDING: usize = 4 << 20;
/// How often a thread looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Flags of `serve-echo`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:3555")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub packet: PacketArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    /// Stop after this long (default: run until killed).
    #[arg(long = "for", value_parser = parse_duration)]
    pub run_for: Option<Duration>,
}

/// Counters one thread publishes (plain stores of thread-local totals).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Stats {
    packets: AtomicU64,
    open: AtomicU64,
}

/// Opens a non-blocking `SO_REUSEPORT` listener on `addr`.
fn listener(addr: SocketAddr) -> Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Runs `serve-echo` until killed or `--for` elapses.
pub fn run(args: ServeArgs) -> Result<()> {
    args.threads.validate()?;
    let opts = args.packet.options()?;
    let first = listener(args.listen)?;
    let local = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..args.threads.threads {
        listeners.push(listener(local)?);
    }
    println!("listening on {local}");
    std::io::stdout().flush()?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let mut stats = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let shard_stats = Arc::new(Stats::default());
        stats.push(shard_stats.clone());
        let cores = &args.threads.cores;
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("echo-{i}"))
            .spawn(move || -> Result<()> {
                if let Some(id) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                        eprintln!("echo-{i}: could not pin to core {id}");
                    }
                }
                Shard::new(listener, opts, shard_stats)?.run(&stop)
            })?;
        handles.push(handle);
    }

    let start = Instant::now();
    let (mut last, mut t) = (0u64, 0u64);
    loop {
        let next = start + Duration::from_secs(t + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        t += 1;
        let packets: u64 = stats
            .iter()
            .map(|s| s.packets.load(Ordering::Relaxed))
            .sum();
        let open: u64 = stats.iter().map(|s| s.open.load(Ordering::Relaxed)).sum();
        if packets != last {
            eprintln!("serve-echo t={t}s pps={} conns={open}", packets - last);
        }
        last = packets;
        if args.run_for.is_some_and(|d| start.elapsed() >= d)
            || handles.iter().any(|h| h.is_finished())
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("an echo thread panicked"))??;
    }
    eprintln!("serve-echo: echoed {last} packets");
    Ok(())
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Partial frame left from the last read.
    leftover: Vec<u8>,
    /// Replies the socket did not take yet.
    pending: Vec<u8>,
    /// Reads paused until `pending` drains.
    throttled: bool,
}

impl Conn {
    /// Asks for writable events only while replies are pending, so a
    /// connection that keeps up costs no extra wake-ups.
    fn watch_writes(&mut self, registry: &mio::Registry, token: Token) -> std::io::Result<()> {
        let interest = if self.pending.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        registry.reregister(&mut self.stream, token, interest)
    }
}

/// One echo thread.
struct Shard {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    opts: PacketOptions,
    stats: Arc<Stats>,
    packets: u64,
    open: u64,
}

impl Shard {
    fn new(mut listener: TcpListener, opts: PacketOptions, stats: Arc<Stats>) -> Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Shard {
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            rbuf: BytesMut::with_capacity(wire::READ_CHUNK),
            wbuf: BytesMut::with_capacity(wire::READ_CHUNK),
            opts,
            stats,
            packets: 0,
            open: 0,
        })
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.poll.poll(&mut events, Some(STOP_CHECK)) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in events.iter() {
                if event.token() == LISTENER {
                    self.accept();
                    continue;
                }
                let j = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(j);
                }
                if event.is_writable() {
                    self.on_writable(j);
                }
            }
            self.stats.packets.store(self.packets, Ordering::Relaxed);
            self.stats.open.store(self.open, Ordering::Relaxed);
        }
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let j = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, Token(j), Interest::READABLE)
            {
                eprintln!("register failed: {e}");
                self.free.push(j);
                continue;
            }
            self.conns[j] = Some(Conn {
                stream,
                leftover: Vec::new(),
                pending: Vec::new(),
                throttled: false,
            });
            self.open += 1;
        }
    }

    /// Reads everything, echoes every packet into one buffer, writes once.
    fn on_readable(&mut self, j: usize) {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        if conn.throttled {
            return;
        }
        let (opts, wbuf) = (&self.opts, &mut self.wbuf);
        let mut packets = 0;
        let end = wire::read_frames(
            &conn.stream,
            &mut self.rbuf,
            &mut conn.leftover,
            opts,
            |frame| {
                packets += 1;
                match frame {
                    Frame::Heartbeat { .. } => {
                        codec::encode_heartbeat(heartbeat_time(opts), opts, wbuf)
                    }
                    Frame::Data(p) => {
                        // Decoded packets always re-encode under the same options.
                        let _ = codec::encode_data(p.ext, p.route, p.seq, &p.payload, opts, wbuf);
                    }
                }
            },
        );
        self.packets += packets;
        let mut ok = true;
        if !self.wbuf.is_empty() {
            if conn.pending.is_empty() {
                match wire::write_some(&conn.stream, &self.wbuf) {
                    Ok(n) if n < self.wbuf.len() => {
                        conn.pending.extend_from_slice(&self.wbuf[n..]);
                        ok = conn.watch_writes(self.poll.registry(), Token(j)).is_ok();
                    }
                    Ok(_) => {}
                    Err(_) => ok = false,
                }
            } else {
                conn.pending.extend_from_slice(&self.wbuf);
            }
            self.wbuf.clear();
            conn.throttled = conn.pending.len() > MAX_PENDING;
        }
        if !ok || !matches!(end, ReadEnd::Drained) {
            self.close(j);
        }
    }

    /// Sends replies left over from a full socket buffer.
    fn on_writable(&mut self, j: usize) {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        if conn.pending.is_empty() {
            return;
        }
        match wire::write_some(&conn.stream, &conn.pending) {
            Ok(n) => {
                conn.pending.drain(..n);
            }
            Err(_) => return self.close(j),
        }
        if conn.pending.is_empty() {
            conn.pending = Vec::new();
            if conn.watch_writes(self.poll.registry(), Token(j)).is_err() {
                return self.close(j);
            }
            if conn.throttled {
                conn.throttled = false;
                self.on_readable(j);
            }
        }
    }

    fn close(&mut self, j: usize) {
        if let Some(mut conn) = self.conns.get_mut(j).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.free.push(j);
            self.open -= 1;
        }
    }
}

/// The time a heartbeat reply carries, when the options ask for one.
fn heartbeat_time(opts: &PacketOptions) -> Option<i64> {
    opts.heartbeat_time.then(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    })
}
