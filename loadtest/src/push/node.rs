//! The load generator's own node: started in-process, dialled by the gate,
//! ready once every shard's link is up.

use super::*;

/// The in-process node and the gate its clients logged in through.
pub(super) struct LoadNode {
    pub(super) handle: NodeHandle,
    /// The id of the gate the first login came from (several gates may
    /// dial the node; pushes go to the clients' gate).
    pub(super) gate: Arc<OnceLock<String>>,
}

impl LoadNode {
    /// A client for the clients' gate (after the logins).
    pub(super) fn gates(&self) -> GateClient {
        let all = self.handle.gates();
        match self.gate.get() {
            Some(id) => all.gate(id),
            None => all,
        }
    }
}

/// Starts the node (login route, binds on workers) and waits for the gate
/// to dial it on every shard.
pub(super) fn start_node(args: &NodeArgs) -> Result<LoadNode> {
    let gate = Arc::new(OnceLock::new());
    let login_gate = gate.clone();
    let builder =
        Node::builder("ringgate-loadtest").route(args.own.login_route, move |ctx: &mut Context| {
            login_gate.get_or_init(|| ctx.gate_id().to_string());
            log_in(ctx);
        });
    let handle = start_own(builder, &args.own)?;
    Ok(LoadNode { handle, gate })
}

/// Answers a log-in: binds the uid in the payload (decimal) to the
/// session and replies `ok`, or `error ...`. Returns whether it bound.
pub(crate) fn log_in(ctx: &mut Context) -> bool {
    let uid = std::str::from_utf8(ctx.payload())
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&u| u > 0);
    match uid {
        None => ctx.reply("error: payload is not a uid"),
        Some(uid) => match ctx.bind(UserId(uid)) {
            Ok(()) => {
                ctx.reply("ok");
                return true;
            }
            Err(e) => ctx.reply(format!("error {e}")),
        },
    }
    false
}

/// Binds `builder` as the load generator's node (`--node-listen`,
/// `--node-workers`), says what the gate's config must list, spawns it and
/// waits for the gate's links.
pub(crate) fn start_own(builder: NodeBuilder, own: &OwnNodeArgs) -> Result<NodeHandle> {
    let node = builder
        .listen(own.node_listen)
        .workers(own.node_workers.max(1))
        .bind()
        .with_context(|| format!("node: --node-listen {}", own.node_listen))?;
    let addr = node.local_addr();
    eprintln!(
        "node listening on {addr}; the gate's config must list it ([[nodes]] addr = \"{addr}\"); \
         waiting up to {} for its links",
        show(own.link_wait)
    );
    let handle = node.spawn();
    wait_links(&handle.gates(), own.link_wait, addr)?;
    Ok(handle)
}

/// Waits until every gate that dialed the node has a link up from each of
/// its shards.
pub(super) fn wait_links(gates: &GateClient, within: Duration, addr: SocketAddr) -> Result<()> {
    let start = Instant::now();
    let deadline = start + within;
    let mut shards = None;
    loop {
        let links = gates.links();
        if links > 0 {
            // Shards of every gate connected (each gate's stat names its shards).
            shards = gates
                .gate_ids()
                .iter()
                .map(|id| gates.gate(id).stat().map(|s| s.shards.len().max(1)))
                .sum::<Result<usize, _>>()
                .ok()
                .or(shards);
        }
        if let Some(n) = shards.filter(|&n| links >= n) {
            let ids = gates.gate_ids().len();
            eprintln!(
                "node: {links} link(s) up from {ids} gate(s) ({n} shards) after {:.1}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            if links > 0 {
                eprintln!(
                    "node: only {links} of {} links up after {}; going on",
                    shards.map_or("?".into(), |n| n.to_string()),
                    show(within)
                );
                return Ok(());
            }
            bail!(
                "the gate did not dial the node at {addr} within {}: list it in the gate's config \
                 ([[nodes]] addr = \"{addr}\") and check the gate is running",
                show(within)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
