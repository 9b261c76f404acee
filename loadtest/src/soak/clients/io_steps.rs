//! A client thread's socket work: connect and upgrade steps, reads (judged
//! by [`Judge`]), writes, the periodic sweep, the drain, and the one place
//! a connection ends and its questions are accounted for.

use super::*;

/// Whether a non-blocking connect is done: `Some(true)` connected,
/// `Some(false)` still under way, `None` failed.
fn connected(s: &TcpStream) -> Option<bool> {
    if !matches!(s.take_error(), Ok(None)) {
        return None;
    }
    match s.peer_addr() {
        Ok(_) => Some(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Some(false),
        Err(_) => None,
    }
}

impl ClientThread {
    /// Advances a connection that is connecting or upgrading.
    pub(super) fn step(&mut self, j: usize) {
        let dialer = &self.plan.dialer;
        let Some(c) = self.slab[j].as_mut() else {
            return;
        };
        if let Stage::Connecting(s) = &c.stage {
            match connected(s) {
                Some(true) => {}
                Some(false) => return,
                None => return self.end(j, End::Failed),
            }
            let _ = s.set_nodelay(true);
            let Stage::Connecting(s) = std::mem::replace(&mut c.stage, Stage::Gone) else {
                unreachable!("checked above")
            };
            match dialer.stream(s) {
                Ok((stream, hs)) => c.stage = Stage::Handshaking(stream, Box::new(hs)),
                Err(_) => return self.end(j, End::Failed),
            }
        }
        let Stage::Handshaking(stream, hs) = &mut c.stage else {
            return;
        };
        match stream.handshake(hs, &mut c.leftover) {
            Ok(true) => self.opened(j),
            Ok(false) => {}
            Err(_) => self.end(j, End::Failed),
        }
    }

    /// Connection `j` finished its handshake: it is open, and may log in.
    fn opened(&mut self, j: usize) {
        let login = chance(&mut self.rng, self.plan.bind_fraction);
        let now = Instant::now();
        let (plan, shared) = (&self.plan, &self.shared);
        let Some(c) = self.slab[j].as_mut() else {
            return;
        };
        let Stage::Handshaking(mut stream, _) = std::mem::replace(&mut c.stage, Stage::Gone) else {
            unreachable!("called on a handshaking connection")
        };
        if self
            .poll
            .registry()
            .reregister(&mut stream.sock, Token(j), Interest::READABLE)
            .is_err()
        {
            c.stage = Stage::Open(stream);
            return self.end(j, End::Failed);
        }
        bump(&shared.counts.opened, 1);
        shared.open.fetch_add(1, Ordering::Relaxed);
        c.last_sent = now;
        if login {
            let uid = shared.uids.fetch_add(1, Ordering::Relaxed) + 1;
            let text = uid.to_string();
            let encoded = stream.encode_data(
                plan.login_route,
                LOGIN_SEQ,
                text.as_bytes(),
                &plan.opts,
                &mut c.outbox,
            );
            if encoded.is_ok() {
                c.replies.uid = uid;
                c.replies.login = Some(now);
                bump(&shared.counts.logins, 1);
            }
        }
        c.stage = Stage::Open(stream);
        self.flush(j);
        // Bytes that came with the `101` are in `leftover`: judge them now,
        // no readable edge will come for them.
        if self.slab[j]
            .as_ref()
            .is_some_and(|c| !c.leftover.is_empty())
        {
            self.on_readable(j);
        }
    }

    /// Reads and judges everything connection `j` received.
    pub(super) fn on_readable(&mut self, j: usize) {
        let Self {
            slab,
            rbuf,
            plan,
            shared,
            pattern,
            ..
        } = self;
        let Some(c) = slab.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        let Stage::Open(stream) = &mut c.stage else {
            return;
        };
        let judge = Judge {
            login_route: plan.login_route,
            route: plan.route,
            push_route: plan.push_route,
            pattern,
            counts: &shared.counts,
            errors: &shared.errors,
        };
        let replies = &mut c.replies;
        let end = stream.read_frames(rbuf, &mut c.leftover, &plan.opts, &mut c.outbox, |f| {
            judge.frame(f, replies)
        });
        let why = match end {
            ReadEnd::Drained => return self.flush(j),
            ReadEnd::Closed => return self.end(j, End::ByGate),
            ReadEnd::Io(e) => format!("read error: {e}"),
            ReadEnd::Codec(e) => format!("bad packet from the gate: {e}"),
            ReadEnd::Protocol(e) => e,
        };
        if std::mem::take(&mut self.first_error) {
            eprintln!("soak: connection dropped: {why} (only the first is shown)");
        }
        self.end(j, End::Failed);
    }

    /// Writes as much of connection `j`'s outbox as the socket takes.
    pub(super) fn flush(&mut self, j: usize) {
        let Some(c) = self.slab.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        let Stage::Open(stream) = &mut c.stage else {
            return;
        };
        if c.outbox.is_empty() && !stream.wants_write() {
            return;
        }
        let written = stream.flush_outbox(
            &mut c.outbox,
            self.poll.registry(),
            Token(j),
            &mut c.watching_writes,
        );
        match written {
            Ok(()) => {}
            Err(e) if wire::is_reset(&e) => self.end(j, End::ByGate),
            Err(_) => self.end(j, End::Failed),
        }
    }

    /// Heartbeats, resumes of slow readers (all of them when `draining`),
    /// connect time-outs, and questions unanswered for too long.
    pub(super) fn sweep(&mut self, now: Instant, draining: bool) {
        let stale = now.checked_sub(self.plan.lost_after);
        for j in 0..self.slab.len() {
            let Some(c) = self.slab[j].as_mut() else {
                continue;
            };
            let Stage::Open(stream) = &mut c.stage else {
                if now.duration_since(c.since) > CONNECT_TIMEOUT {
                    self.end(j, End::Failed);
                }
                continue;
            };
            if let Some(before) = stale {
                bump(&self.shared.counts.lost, c.replies.expire(before));
            }
            if now.duration_since(c.last_sent) >= self.plan.heartbeat {
                stream.encode_heartbeat(&self.plan.opts, &mut c.outbox);
                c.last_sent = now;
                bump(&self.shared.counts.heartbeats_sent, 1);
                self.flush(j);
            }
            let Some(c) = self.slab[j].as_mut() else {
                continue;
            };
            if c.paused_until.is_some_and(|t| draining || t <= now) {
                c.paused_until = None;
                self.on_readable(j);
            }
        }
    }

    /// After the run: waits up to `--drain` for the last answers (reading,
    /// heartbeating, no new questions); counts what is left as lost.
    pub(super) fn drain(&mut self, events: &mut Events) -> io::Result<()> {
        // Connections not open yet would only add log-ins: close them.
        for j in 0..self.slab.len() {
            if self.slab[j]
                .as_ref()
                .is_some_and(|c| !matches!(c.stage, Stage::Open(_)))
            {
                self.end(j, End::Finished);
            }
        }
        let deadline = Instant::now() + self.plan.drain;
        loop {
            let now = Instant::now();
            self.sweep(now, true);
            let waiting: u64 = self
                .slab
                .iter()
                .flatten()
                .map(|c| c.replies.outstanding())
                .sum();
            if waiting == 0 || now >= deadline {
                break;
            }
            self.poll_once(events, SWEEP.min(deadline - now))?;
        }
        for c in self.slab.iter_mut().flatten() {
            bump(&self.shared.counts.lost, c.replies.forget());
        }
        Ok(())
    }

    /// Ends connection `j` (if there is one) and accounts for it.
    pub(super) fn end(&mut self, j: usize, how: End) {
        let Some(mut c) = self.slab.get_mut(j).and_then(Option::take) else {
            return;
        };
        self.live -= 1;
        self.free.push(j);
        let counts = &self.shared.counts;
        let was_open = matches!(c.stage, Stage::Open(_));
        let sock = match &mut c.stage {
            Stage::Open(s) => {
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
                Some(&mut s.sock)
            }
            Stage::Handshaking(s, _) => Some(&mut s.sock),
            Stage::Connecting(s) => Some(s),
            Stage::Gone => None,
        };
        if let Some(sock) = sock {
            let _ = self.poll.registry().deregister(sock);
            if how == End::Abrupt {
                let _ = socket2::SockRef::from(&*sock).set_linger(Some(Duration::ZERO));
            }
        }
        let questions = c.replies.forget();
        match how {
            End::Failed | End::ByGate if !was_open => bump(&counts.connect_failures, 1),
            End::Graceful => {
                bump(&counts.closed_graceful, 1);
                bump(&counts.abandoned, questions);
            }
            End::Abrupt => {
                bump(&counts.closed_abrupt, 1);
                bump(&counts.abandoned, questions);
            }
            End::ByGate => {
                bump(&counts.closed_by_gate, 1);
                bump(&counts.cut, questions);
            }
            End::Failed => {
                bump(&counts.failed, 1);
                bump(&counts.cut, questions);
            }
            End::Finished => {
                bump(&counts.closed_at_end, 1);
                bump(&counts.lost, questions);
            }
        }
    }
}
