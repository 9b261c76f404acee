//! `ringgate-glommio-echo`: the one-hop due-format echo server on glommio 0.9,
//! the runtime ringgate's design first named (and rejected by measurement;
//! see DESIGN.md, "Runtime decision"). `loadtest/compare.sh` runs it beside
//! `ringgate-loadtest serve-echo` so that decision stays reproducible.
//!
//! Built the way glommio's own examples build a sharded server, and the way
//! `serve-echo` is built, so the comparison is fair:
//!
//! * one `LocalExecutor` per core, pinned (`Placement::Fixed`), each with its
//!   own `SO_REUSEPORT` listener (made here with socket2 so the listen backlog
//!   is a flag: glommio's `TcpListener::bind` hard-codes 1024);
//! * one task per connection: read into the connection's buffer (glommio
//!   sockets read into caller memory, so each connection owns one), decode
//!   every frame with `ringgate::codec`, encode every reply of that read into
//!   one buffer, one `write_all`.
//!
//! Data packets come back with the same ext, route, seq and payload;
//! heartbeats are answered with a heartbeat (with the unix time under
//! `--heartbeat-time`). The first stdout line is `listening on ADDR`.

use std::cell::Cell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use ringgate::codec::{self, ByteOrder, Frame, PacketOptions};
use socket2::{Domain, Protocol, Socket, Type};

/// Byte order flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OrderArg {
    /// Network order, due's default.
    Big,
    /// Little-endian.
    Little,
}

/// A due-format echo server on glommio: one pinned executor per core.
#[derive(Parser, Debug)]
#[command(name = "ringgate-glommio-echo", version, about)]
struct Args {
    /// Address to listen on; port 0 picks one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:3557")]
    listen: SocketAddr,
    /// Executors, one per listener.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin executor i to `cores[i % len]` (default: executor i on core i).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Listen backlog of each listener (glommio's own `bind` uses 1024).
    #[arg(long, default_value_t = 4096)]
    backlog: i32,
    /// Bytes of each connection's read buffer.
    #[arg(long, default_value_t = 4096)]
    read_bytes: usize,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long = "for-secs")]
    run_for: Option<u64>,
    /// Byte order of size, route, seq and heartbeat time.
    #[arg(long, value_enum, default_value = "big")]
    byte_order: OrderArg,
    /// Width of the route field: 1, 2 or 4.
    #[arg(long, default_value_t = 2)]
    route_bytes: u8,
    /// Width of the seq field: 0, 1, 2 or 4.
    #[arg(long, default_value_t = 2)]
    seq_bytes: u8,
    /// Largest payload accepted.
    #[arg(long, default_value_t = 5000)]
    buffer_bytes: usize,
    /// Heartbeat replies carry the unix time.
    #[arg(long)]
    heartbeat_time: bool,
}

impl Args {
    fn options(&self) -> Result<PacketOptions> {
        if !matches!(self.route_bytes, 1 | 2 | 4) || !matches!(self.seq_bytes, 0 | 1 | 2 | 4) {
            bail!("--route-bytes must be 1, 2 or 4 and --seq-bytes 0, 1, 2 or 4");
        }
        Ok(PacketOptions {
            byte_order: match self.byte_order {
                OrderArg::Big => ByteOrder::Big,
                OrderArg::Little => ByteOrder::Little,
            },
            route_bytes: self.route_bytes,
            seq_bytes: self.seq_bytes,
            buffer_bytes: self.buffer_bytes,
            heartbeat_time: self.heartbeat_time,
        })
    }
}

/// A bound, listening `SO_REUSEPORT` socket, handed to its executor as a fd.
fn listener(addr: SocketAddr, backlog: i32) -> Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(backlog)?;
    Ok(socket)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.threads == 0 || args.read_bytes == 0 {
        bail!("--threads and --read-bytes must be at least 1");
    }
    let opts = args.options()?;
    let first = listener(args.listen, args.backlog)?;
    let local = first
        .local_addr()?
        .as_socket()
        .context("listener has no IP address")?;
    let mut fds: Vec<RawFd> = vec![first.into_raw_fd()];
    for _ in 1..args.threads {
        fds.push(listener(local, args.backlog)?.into_raw_fd());
    }

    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Executors accept forever; the process ends them (`--for-secs` or a kill).
    let mut handles = Vec::new();
    let mut counters = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        let core = if args.cores.is_empty() {
            i % online
        } else {
            args.cores[i % args.cores.len()]
        };
        let packets = Arc::new(AtomicU64::new(0));
        counters.push(packets.clone());
        let read_bytes = args.read_bytes;
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core))
            .name(&format!("glommio-echo-{i}"))
            .spawn(move || async move {
                // SAFETY: `fd` is a listening socket this executor now owns.
                let listener = unsafe { TcpListener::from_raw_fd(fd) };
                serve(listener, opts, read_bytes, packets).await
            })
            .map_err(|e| anyhow::anyhow!("starting executor {i} on core {core}: {e}"))?;
        handles.push(handle);
    }
    println!("listening on {local}");
    std::io::stdout().flush()?;

    let start = Instant::now();
    let (mut last, mut t) = (0u64, 0u64);
    loop {
        let next = start + Duration::from_secs(t + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        t += 1;
        let packets: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if packets != last {
            eprintln!("glommio-echo t={t}s pps={}", packets - last);
        }
        last = packets;
        if args.run_for.is_some_and(|s| t >= s) {
            eprintln!("glommio-echo: echoed {last} packets");
            // Executors run their accept loops forever: end the process.
            std::process::exit(0);
        }
    }
}

/// Accepts forever, one detached task per connection.
async fn serve(
    listener: TcpListener,
    opts: PacketOptions,
    read_bytes: usize,
    packets: Arc<AtomicU64>,
) -> Result<()> {
    // Counted locally, published with a plain store once per read batch.
    let local = Rc::new(Cell::new(0u64));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (local, packets) = (local.clone(), packets.clone());
        glommio::spawn_local(async move {
            let _ = echo(stream, opts, read_bytes, &local, &packets).await;
        })
        .detach();
    }
}

/// One connection: read, decode everything buffered, one write of all replies.
async fn echo(
    mut stream: TcpStream,
    opts: PacketOptions,
    read_bytes: usize,
    local: &Cell<u64>,
    packets: &AtomicU64,
) -> Result<()> {
    let mut chunk = vec![0u8; read_bytes];
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        rbuf.extend_from_slice(&chunk[..n]);
        let mut count = 0;
        while let Some(frame) = codec::decode(&mut rbuf, &opts)? {
            count += 1;
            match frame {
                Frame::Heartbeat { .. } => {
                    codec::encode_heartbeat(heartbeat_time(&opts), &opts, &mut wbuf)
                }
                Frame::Data(p) => {
                    codec::encode_data(p.ext, p.route, p.seq, &p.payload, &opts, &mut wbuf)?
                }
            }
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        local.set(local.get() + count);
        packets.store(local.get(), Ordering::Relaxed);
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
