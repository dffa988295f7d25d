#!/usr/bin/env bash
# Multi-node Ray test cluster on one machine: a bridge + 3 network namespaces
# (head, w1, w2) on a private /24, one Ray node per namespace.
#
#   netns-cluster.sh up        create namespaces, start head + 2 workers, wait for 3 alive nodes
#   netns-cluster.sh down      kill every process in the namespaces, delete them + the bridge + state
#   netns-cluster.sh status    ray status (from the head namespace)
#   netns-cluster.sh env       print the env (export lines) a driver/test needs
#   netns-cluster.sh exec NODE CMD...   run CMD in namespace NODE (head|w1|w2) with the cluster env
#   netns-cluster.sh pids NODE [PATTERN] pids in namespace NODE (optionally matching PATTERN)
#   netns-cluster.sh start-node w1|w2    (re)start a worker node (after a kill)
#   netns-cluster.sh kill-node NODE      kill -9 every process in NODE's namespace
#   netns-cluster.sh partition|heal NODE take NODE's veth down / up
# Node resources: head CPU=HEAD_CPUS; w1 {"special":1,"worker":1}; w2 {"other":1,"worker":1}.
#
# Env knobs: BP_NS (name prefix, default bpray), BP_SUBNET (first 3 octets, default 10.77.0),
#            BP_STATE (state dir, default /tmp/$BP_NS-state), VENV (default ./venv),
#            HEAD_CPUS (0), W1_CPUS (1), W2_CPUS (1), OBJ_MEM (bytes per node, 300000000),
#            KEEP_LOGS (dir: on `down`, copy the nodes' Ray logs there first).
# Needs root (ip netns). Traffic stays on the bridge: no default route, no forwarding, no NAT.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS="${BP_NS:-bpray}"
NET="${BP_SUBNET:-10.77.0}"
STATE="${BP_STATE:-/tmp/$NS-state}"
VENV="${VENV:-$HERE/../../../target/ray-venv}"
BR="$NS-br0"
NODES=(head w1 w2)
declare -A IP=([head]="$NET.1" [w1]="$NET.2" [w2]="$NET.3")
BR_IP="$NET.254"
PORT=6379

log() { echo "[netns-cluster $(date +%T.%3N)] $*" >&2; }

cluster_env() {
    # Health checks: GCS pings every raylet; a node is dead after
    # period*threshold (+timeout if it hangs). Ray's defaults (3 s x 5, 10 s
    # timeout) take 15-60 s; these take ~2-3 s. Keepalives make a silently
    # partitioned peer's gRPC channels fail in ~2 s instead of hanging.
    cat <<EOF
export HOME=$STATE/home
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN=$(cat "$STATE/token")
export RAY_USAGE_STATS_ENABLED=0
export BP_RAY_ADDRESS=${IP[head]}:$PORT
EOF
    # For comparison runs: BP_RAY_DEFAULT_HEALTH=1 (Ray's defaults for all), BP_RAY_NO_HEALTH=1
    # (default health checks), BP_RAY_NO_KEEPALIVE=1 (default keepalives).
    if [[ -z "${BP_RAY_DEFAULT_HEALTH:-}" && -z "${BP_RAY_NO_HEALTH:-}" ]]; then
        cat <<EOF
export RAY_health_check_initial_delay_ms=1000
export RAY_health_check_period_ms=1000
export RAY_health_check_timeout_ms=1000
export RAY_health_check_failure_threshold=2
EOF
    fi
    if [[ -z "${BP_RAY_DEFAULT_HEALTH:-}" && -z "${BP_RAY_NO_KEEPALIVE:-}" ]]; then
        cat <<EOF
export RAY_grpc_keepalive_time_ms=1000
export RAY_grpc_keepalive_timeout_ms=1000
export RAY_grpc_client_keepalive_time_ms=1000
export RAY_grpc_client_keepalive_timeout_ms=1000
EOF
    fi
}

in_ns() { # in_ns NODE CMD... : run with the cluster env inside the namespace
    local node="$1"; shift
    ip netns exec "$NS-$node" env -i PATH="$VENV/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        bash -c "$(cluster_env); exec \"\$@\"" _ "$@"
}

ns_pids() { ip netns pids "$NS-$1" 2>/dev/null || true; }

up() {
    [[ -x "$VENV/bin/ray" ]] || { log "no venv at $VENV: run setup-venv.sh"; exit 1; }
    if ip netns list | grep -q "^$NS-head\b"; then log "already up? run down first"; exit 1; fi
    local t0; t0=$(date +%s%N)
    mkdir -p "$STATE/home"
    "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' > "$STATE/token"
    chmod 600 "$STATE/token"

    ip link add "$BR" type bridge
    ip addr add "$BR_IP/24" dev "$BR"
    ip link set "$BR" up
    local i=0
    for n in "${NODES[@]}"; do
        ip netns add "$NS-$n"
        ip link add "$NS-$n-v" type veth peer name "$NS-$n-p"
        ip link set "$NS-$n-p" netns "$NS-$n"
        ip -n "$NS-$n" link set "$NS-$n-p" name eth0
        ip link set "$NS-$n-v" master "$BR"
        ip link set "$NS-$n-v" up
        ip -n "$NS-$n" link set lo up
        ip -n "$NS-$n" addr add "${IP[$n]}/24" dev eth0
        ip -n "$NS-$n" link set eth0 up
        i=$((i + 1))
    done
    local tnet; tnet=$(date +%s%N)
    log "network up in $(( (tnet - t0) / 1000000 )) ms"

    local obj="${OBJ_MEM:-300000000}"
    # --temp-dir per node: every Ray node on this machine needs its own session dir.
    in_ns head ray start --head --node-ip-address="${IP[head]}" --port=$PORT \
        --num-cpus="${HEAD_CPUS:-0}" --object-store-memory="$obj" \
        --include-dashboard=false --disable-usage-stats \
        --temp-dir="$STATE/head" >"$STATE/head.log" 2>&1 \
        || { cat "$STATE/head.log" >&2; exit 1; }
    local th; th=$(date +%s%N)
    log "head started in $(( (th - tnet) / 1000000 )) ms"
    start_node w1 &
    local p1=$!
    start_node w2 &
    local p2=$!
    wait $p1 || { cat "$STATE/w1.log" >&2; exit 1; }
    wait $p2 || { cat "$STATE/w2.log" >&2; exit 1; }
    # wait until the GCS sees 3 alive nodes
    in_ns head python - <<'EOF'
import os, time, ray
ray.init(address=os.environ["BP_RAY_ADDRESS"], _node_ip_address=os.environ["BP_RAY_ADDRESS"].split(":")[0],
         logging_level="ERROR", log_to_driver=False)
t0 = time.time()
while time.time() - t0 < 60:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= 3:
        break
    time.sleep(0.2)
for n in ray.nodes():
    print("  node", n["NodeManagerAddress"], "alive" if n["Alive"] else "DEAD",
          {k: v for k, v in n["Resources"].items() if not k.startswith(("node:", "object_store", "memory"))})
ray.shutdown()
assert len(alive) >= 3, "only %d nodes alive" % len(alive)
EOF
    local t1; t1=$(date +%s%N)
    log "cluster up (3 nodes alive) in $(( (t1 - t0) / 1000000 )) ms total"
    log "memory used by Ray processes: $(mem_mb) MB (RSS sum)"
}

start_node() { # start_node w1|w2 : (re)start a worker node's Ray processes
    local n="$1" res cpus
    case "$n" in
        w1) res='{"special": 1, "worker": 1}'; cpus="${W1_CPUS:-1}" ;;
        w2) res='{"other": 1, "worker": 1}'; cpus="${W2_CPUS:-1}" ;;
        *) log "start_node: unknown node $n"; return 1 ;;
    esac
    in_ns "$n" ray start --address="${IP[head]}:$PORT" --node-ip-address="${IP[$n]}" \
        --num-cpus="$cpus" --resources="$res" --object-store-memory="${OBJ_MEM:-300000000}" \
        --temp-dir="$STATE/$n" >"$STATE/$n.log" 2>&1
}

mem_mb() {
    local total=0 p
    for n in "${NODES[@]}"; do
        for p in $(ns_pids "$n"); do
            total=$(( total + $(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0) ))
        done
    done
    echo $(( total / 1024 ))
}

down() {
    local n p
    for n in "${NODES[@]}"; do
        if ip netns list | grep -q "^$NS-$n\b"; then
            # Precise: only processes inside our namespaces (`ray stop` would kill
            # every Ray process on the machine, including other tests' clusters).
            for p in $(ns_pids "$n"); do kill -9 "$p" 2>/dev/null || true; done
        fi
    done
    sleep 0.5
    # Leftovers that left the namespace (none expected): match our state dir.
    for p in $(pgrep -f -- "$STATE/" || true); do
        [[ "$p" != "$$" ]] && kill -9 "$p" 2>/dev/null || true
    done
    for n in "${NODES[@]}"; do
        local left; left=$(ns_pids "$n" | wc -l)
        [[ "$left" -gt 0 ]] && log "warning: $left processes still in $NS-$n"
        ip netns del "$NS-$n" 2>/dev/null || true
        ip link del "$NS-$n-v" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
    if [[ -n "${KEEP_LOGS:-}" && -d "$STATE" ]]; then
        mkdir -p "$KEEP_LOGS"
        cp -r "$STATE"/*.log "$KEEP_LOGS"/ 2>/dev/null || true
        for n in "${NODES[@]}"; do
            [[ -d "$STATE/$n/session_latest/logs" ]] && cp -rL "$STATE/$n/session_latest/logs" "$KEEP_LOGS/$n-logs" 2>/dev/null || true
        done
        log "logs kept in $KEEP_LOGS"
    fi
    rm -rf "$STATE"
    log "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) cluster_env ;;
    status) in_ns head ray status --address "${IP[head]}:$PORT" ;;
    exec) shift; node="$1"; shift; in_ns "$node" "$@" ;;
    pids) node="$2"; pat="${3:-}"
          for p in $(ns_pids "$node"); do
              if [[ -z "$pat" ]] || grep -q -- "$pat" "/proc/$p/cmdline" 2>/dev/null; then echo "$p"; fi
          done ;;
    mem) mem_mb ;;
    start-node) start_node "$2" ;;
    kill-node) # kill-node NODE : kill -9 every process of that Ray node (simulated machine loss)
        for p in $(ns_pids "$2"); do kill -9 "$p" 2>/dev/null || true; done ;;
    partition) ip link set "$NS-$2-v" down ;;   # partition NODE: cut its cable
    heal) ip link set "$NS-$2-v" up ;;
    *) sed -n '2,21p' "$0"; exit 2 ;;
esac
