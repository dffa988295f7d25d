#!/usr/bin/env python3
"""Backplane ray-like driver: the one owner of Ray object refs for a `ray` backend instance.

The Rust plugin spawns this process with the venv's interpreter:

    python driver.py --socket /run/.../driver.sock --address local [options]

The driver binds a Unix socket at --socket, prints one line
``BACKPLANE_RAY_DRIVER_LISTENING <path>`` on stdout, accepts exactly one
connection (the host), connects to / starts Ray, then sends ``hello`` (or
``fatal`` and exits 2). Frames in both directions: 4-byte big-endian length +
one msgpack map with a ``type`` field and named fields (rmp-serde
``to_vec_named``; byte fields must be msgpack bin -> ``serde_bytes``).

The driver owns every Ray ObjectRef. Outputs larger than --inline-threshold
stay in Ray's object store; the host gets their id (ObjectRef hex) and passes
it back as an input ``ref`` to downstream submits, ``fetch``es final outputs
and ``release``s ids nobody needs any more.

When the host disconnects (EOF), sends ``shutdown``, or the driver gets
SIGTERM/SIGINT, in-flight tasks are cancelled and, in local mode, the private
Ray instance is stopped.

See FINDINGS.md for the protocol description.
"""

import argparse
import heapq
import json
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
import traceback

import msgpack

MAX_FRAME = 1 << 30  # 1 GiB hard cap for one frame

# ---------------------------------------------------------------------------
# Worker side: runs inside Ray worker processes (pickled by value by
# cloudpickle since this file runs as __main__).
# ---------------------------------------------------------------------------

_NODE_LIB = {}  # per-worker-process cache: path -> (cdll, run_fn, free_fn)


def _load_node_lib(path):
    import ctypes

    hit = _NODE_LIB.get(path)
    if hit is not None:
        return hit
    lib = ctypes.CDLL(path)
    run = lib.backplane_run_task
    run.restype = ctypes.c_int32
    run.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t,                      # req, req_len
        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),  # in_ptrs, in_lens
        ctypes.c_size_t,                                       # n_inputs
        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),  # out, out_len
    ]
    free = lib.backplane_free
    free.restype = None
    free.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    init = getattr(lib, "backplane_init", None)
    if init is not None:
        init.restype = ctypes.c_int32
        init.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        cfg = os.environ.get("BACKPLANE_RAY_NODE_LIB_CONFIG", "").encode()
        out = ctypes.c_void_p()
        out_len = ctypes.c_size_t()
        buf = ctypes.create_string_buffer(cfg, len(cfg))
        rc = init(ctypes.cast(buf, ctypes.c_void_p), len(cfg), ctypes.byref(out), ctypes.byref(out_len))
        msg = b""
        if out.value:
            msg = ctypes.string_at(out.value, out_len.value)
            free(out.value, out_len.value)
        if rc != 0:
            raise RuntimeError("backplane_init failed (%d): %s" % (rc, msg.decode("utf-8", "replace")))
    hit = (lib, run, free)
    _NODE_LIB[path] = hit
    return hit


def _call_node_lib(path, task_id, node_type, settings, inputs, attempt, context=None):
    """C ABI call. inputs: list of (port, content_type, bytes). Returns response dict."""
    import ctypes

    import msgpack as _mp

    _lib, run, free = _load_node_lib(path)
    req = _mp.packb({
        "task_id": task_id,
        "node_type": node_type,
        "settings": settings,
        "inputs": [{"port": p, "content_type": ct} for (p, ct, _d) in inputs],
        "attempt": attempt,
        "context": context or {},
    }, use_bin_type=True)
    n = len(inputs)
    ptrs = (ctypes.c_void_p * max(n, 1))()
    lens = (ctypes.c_size_t * max(n, 1))()
    keep = []
    for i, (_p, _ct, data) in enumerate(inputs):
        if not isinstance(data, bytes):
            data = bytes(data)
        keep.append(data)
        # c_char_p on a bytes object points at its internal buffer: no copy.
        ptrs[i] = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        lens[i] = len(data)
    out = ctypes.c_void_p()
    out_len = ctypes.c_size_t()
    rc = run(req, len(req), ptrs, lens, n, ctypes.byref(out), ctypes.byref(out_len))
    raw = b""
    if out.value:
        raw = ctypes.string_at(out.value, out_len.value)
        free(out.value, out_len.value)
    del keep
    if rc != 0:
        return {"ok": False, "error_kind": "node_lib",
                "message": "backplane_run_task returned %d: %s" % (rc, raw.decode("utf-8", "replace"))}
    return _mp.unpackb(raw, raw=False)


def _builtin_node(node_type, settings, inputs):
    """Python stand-in for node compute when BACKPLANE_RAY_NODE_LIB is unset."""
    ct0 = inputs[0][1] if inputs else "application/octet-stream"
    if node_type == "noop":
        return [("out", ct0, inputs[0][2] if inputs else b"")]
    if node_type == "echo":
        return [("out", ct0, b"".join(d for (_p, _c, d) in inputs))]
    s = json.loads(settings) if settings else {}
    if node_type == "bytes":  # produce settings.size bytes
        size = int(s.get("size", 0))
        return [("out", "application/octet-stream", (b"\xab" * size))]
    if node_type == "len":  # total input length, as text
        return [("out", "text/plain", str(sum(len(d) for (_p, _c, d) in inputs)).encode())]
    if node_type in ("sleep", "where"):
        import ray

        ctx = ray.get_runtime_context()
        info = {"node_id": ctx.get_node_id(), "pid": os.getpid(),
                "ip": ray.util.get_node_ip_address(),
                "task_id": ctx.get_task_id()}
        marker_dir = s.get("marker_dir")
        if marker_dir:  # lets tests see where/when an attempt started
            fn = os.path.join(marker_dir, "start-%s-%d-%d" % (info["ip"], os.getpid(), time.time_ns()))
            with open(fn, "w") as f:
                json.dump(dict(info, t=time.time()), f)
        deadline = time.time() + float(s.get("seconds", 0))
        while time.time() < deadline:  # short sleeps: a non-force cancel interrupts
            time.sleep(min(0.05, max(0.0, deadline - time.time())))
        return [("out", "application/json", json.dumps(info).encode())]
    if node_type == "raise":
        raise ValueError(s.get("message", "node raised"))
    if node_type == "crash":  # hard worker death -> Ray retries up to max_retries
        os._exit(int(s.get("code", 1)))
    if node_type == "crash_once":  # crash on the first attempt only (marker file)
        marker = s["marker"]
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return [("out", "text/plain", b"survived")]
    raise LookupError("unknown node type %r (no BACKPLANE_RAY_NODE_LIB set)" % (node_type,))


def bp_run_node(meta, *ref_values):
    """The generic Ray task.

    meta = (task_id, node_type, settings, input_descs, out_ports, threshold, slots)
    input_descs: list of (port, content_type, inline_bytes | None); each None is
    filled, in order, from ref_values (top-level ObjectRef args, so Ray resolves
    them and schedules for locality).
    out_ports: declared output ports, or None (anything goes).
    slots=False (num_returns=1): returns only the manifest, every output inline.
    slots=True (num_returns=1+len(out_ports)): returns the manifest followed by
    one slot per declared port: the bytes when the output is larger than
    threshold (it stays in the object store on this node, owned by the driver
    and reconstructable by lineage), else None (the output is inline in the
    manifest).
    manifest = (ok, error_kind, message, [(port, content_type, size, data|None, slot|None)],
                started_unix_us, logs): when the task began to run here, and what
    its node logged as [(level, line)] (the node library keeps it bounded).
    """
    started_us = int(time.time() * 1e6)
    logs = []
    task_id, node_type, settings, input_descs, out_ports, threshold, use_slots, context = meta
    if ref_values:
        it = iter(ref_values)
        inputs = [(p, ct, next(it) if d is None else d) for (p, ct, d) in input_descs]
    else:
        inputs = input_descs
    ok, kind, msg, outs = True, "", "", []
    try:
        lib = os.environ.get("BACKPLANE_RAY_NODE_LIB")
        if lib:
            attempt = (context or {}).get("attempt", 0)
            resp = _call_node_lib(lib, task_id, node_type, settings, inputs, attempt, context)
            ok = bool(resp.get("ok"))
            kind = resp.get("error_kind") or ("" if ok else "node")
            msg = resp.get("message") or ""
            outs = [(o["port"], o.get("content_type", "application/octet-stream"), o.get("data", b""))
                    for o in (resp.get("outputs") or [])]
            logs = [(int(level), line) for (level, line) in (resp.get("logs") or [])]
        else:
            outs = _builtin_node(node_type, settings, inputs)
    except Exception as e:  # node error (not KeyboardInterrupt: that is ray.cancel)
        ok, kind, msg, outs = False, "node", "%s: %s" % (type(e).__name__, e), []
    n_slots = len(out_ports) if use_slots else 0
    slots = [None] * n_slots
    mouts = []
    if ok:
        index = None if out_ports is None else {p: i for i, p in enumerate(out_ports)}
        for (p, ct, d) in outs:
            i = None if index is None else index.get(p)
            if index is not None and i is None:
                ok, kind, msg = False, "node", "node produced undeclared output port %r" % (p,)
                mouts, slots = [], [None] * n_slots
                break
            if use_slots and len(d) > threshold:
                slots[i] = d
                mouts.append((p, ct, len(d), None, i))
            else:
                mouts.append((p, ct, len(d), d, None))
    manifest = (ok, kind, msg, mouts, started_us, logs)
    if not use_slots:
        return manifest
    return (manifest, *slots)


# ---------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------


def log(*a):
    print("[driver %d %.3f]" % (os.getpid(), time.time()), *a, file=sys.stderr, flush=True)


class Conn:
    """Length-framed msgpack over a connected Unix socket."""

    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=1 << 20)
        self.wlock = threading.Lock()
        self.packer = msgpack.Packer(use_bin_type=True)

    def read(self):
        hdr = self.rfile.read(4)
        if len(hdr) < 4:
            return None
        (n,) = struct.unpack(">I", hdr)
        if n > MAX_FRAME:
            raise ValueError("frame too large: %d" % n)
        body = self.rfile.read(n)
        if len(body) < n:
            return None
        return msgpack.unpackb(body, raw=False)

    def write_many(self, msgs):
        parts = []
        for m in msgs:
            b = msgpack.packb(m, use_bin_type=True)
            parts.append(struct.pack(">I", len(b)))
            parts.append(b)
        data = b"".join(parts)
        with self.wlock:
            self.sock.sendall(data)


class Task:
    __slots__ = ("task_id", "refs", "node_type", "deadline", "done", "cancel_kind", "resources", "keep_inline")

    def __init__(self, task_id, refs, node_type, deadline, resources):
        self.task_id = task_id
        self.refs = refs
        self.node_type = node_type
        self.deadline = deadline
        self.done = False
        self.cancel_kind = None
        self.resources = resources
        self.keep_inline = False  # by_ref: false -> outputs always come back as bytes


def as_bytes(x):
    if x is None:
        return None
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, list):  # rmp-serde Vec<u8> without serde_bytes: array of ints
        return bytes(x)
    if isinstance(x, str):
        return x.encode()
    raise TypeError("expected bytes, got %s" % type(x).__name__)


class Driver:
    def __init__(self, args):
        self.args = args
        self.conn = None
        self.tasks = {}            # task_id -> Task (in flight)
        self.objects = {}          # ref hex -> ObjectRef (owned for the host)
        self.lock = threading.Lock()
        self.outq = queue.SimpleQueue()
        self.deadlines = []        # heap of (deadline, task_id)
        self.dl_cv = threading.Condition()
        self.stop = threading.Event()
        self.fn_cache = {}
        self.node_res = []         # list of total-resource dicts of alive nodes
        self.node_res_t = 0.0
        self.wait_new = queue.SimpleQueue()  # (manifest ref, Task) for the wait collector
        self.fetch_pool = None
        self.large_types = set()   # node types seen producing outputs > threshold
        self.timers = set()        # pending force-cancel timers
        self.threads = []          # background threads that call into Ray

    # -- Ray setup ---------------------------------------------------------
    def start_ray(self):
        import ray

        a = self.args
        t0 = time.time()
        kw = dict(include_dashboard=False, logging_level=a.log_level,
                  log_to_driver=not a.quiet_workers)
        env_vars = {k: v for k, v in os.environ.items()
                    if k.startswith("BACKPLANE_RAY_NODE_LIB")}
        if env_vars and a.address != "local":
            # Workers of an existing cluster do not inherit our environment.
            kw["runtime_env"] = {"env_vars": env_vars}
        if a.address == "local":
            kw["_temp_dir"] = a.temp_dir
            if a.num_cpus is not None:
                kw["num_cpus"] = a.num_cpus
            if a.object_store_memory:
                kw["object_store_memory"] = a.object_store_memory
            if a.resources:
                kw["resources"] = json.loads(a.resources)
        else:
            kw["address"] = a.address
            if a.node_ip_address:
                kw["_node_ip_address"] = a.node_ip_address
        if a.init_options:
            # Pass-through `ray.init` keyword arguments from the backend's config.
            kw.update(json.loads(a.init_options))
        ray.init(**kw)
        self.startup_ms = int((time.time() - t0) * 1000)
        self.remote = ray.remote(bp_run_node)
        self.refresh_nodes(force=True)

    def refresh_nodes(self, force=False):
        import ray

        now = time.time()
        if not force and now - self.node_res_t < self.args.node_refresh_s:
            return
        self.node_res = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self.node_res_t = now

    def feasible(self, req):
        if not req:
            return True
        for _ in range(2):
            for res in self.node_res:
                if all(res.get(k, 0.0) + 1e-9 >= v for k, v in req.items()):
                    return True
            self.refresh_nodes(force=True)  # maybe a node joined
        return False

    def hello(self):
        import ray

        nodes = [{"node_id": n["NodeID"], "address": n["NodeManagerAddress"],
                  "alive": bool(n["Alive"]), "resources": n["Resources"]}
                 for n in ray.nodes()]
        return {"type": "hello", "ray_version": ray.__version__,
                "python_version": sys.version.split()[0], "driver_pid": os.getpid(),
                "mode": "local" if self.args.address == "local" else "remote",
                "gcs_address": ray.get_runtime_context().gcs_address,
                "startup_ms": self.startup_ms,
                "cluster_resources": ray.cluster_resources(), "nodes": nodes}

    # -- submit ------------------------------------------------------------
    def remote_fn(self, num_returns, opts_key):
        key = (num_returns, opts_key)
        fn = self.fn_cache.get(key)
        if fn is None:
            num_cpus, num_gpus, memory, custom, max_retries = opts_key
            o = {"num_returns": num_returns, "max_retries": max_retries,
                 "retry_exceptions": False}
            if num_cpus is not None:
                o["num_cpus"] = num_cpus
            if num_gpus:
                o["num_gpus"] = num_gpus
            if memory:
                o["memory"] = memory
            if custom:
                o["resources"] = dict(custom)
            fn = self.remote.options(**o)
            if len(self.fn_cache) > 4096:
                self.fn_cache.clear()
            self.fn_cache[key] = fn
        return fn

    def fail(self, task_id, kind, message):
        self.outq.put({"type": "result", "task_id": task_id, "ok": False, "outputs": [],
                       "error_kind": kind, "message": message})

    def on_submit(self, m):
        task_id = m["task_id"]
        try:
            r = m.get("resources") or {}
            num_cpus = r.get("num_cpus")
            num_gpus = r.get("num_gpus") or 0
            memory = int(r.get("memory") or 0)
            custom = tuple(sorted((r.get("custom") or {}).items()))
            max_retries = m.get("max_retries")
            if max_retries is None:
                max_retries = self.args.max_retries
            req = {}
            req["CPU"] = 1.0 if num_cpus is None else float(num_cpus)
            if num_gpus:
                req["GPU"] = float(num_gpus)
            if memory:
                req["memory"] = float(memory)
            for k, v in custom:
                req[k] = float(v)
            req = {k: v for k, v in req.items() if v > 0}
            if not self.feasible(req):
                tot = self.node_res
                self.fail(task_id, "infeasible",
                          "no alive Ray node can satisfy %s; nodes have %s" % (
                              req, [{k: v for k, v in n.items() if not k.startswith("node:")} for n in tot]))
                return
            descs, refs = [], []
            for inp in m.get("inputs") or []:
                ref_id = inp.get("ref")
                if ref_id is not None:
                    obj = self.objects.get(ref_id)
                    if obj is None:
                        self.fail(task_id, "bad_request", "unknown or released ref %s" % ref_id)
                        return
                    descs.append((inp["port"], inp.get("content_type", ""), None))
                    refs.append(obj)
                else:
                    descs.append((inp["port"], inp.get("content_type", ""), as_bytes(inp.get("data")) or b""))
            out_ports = m.get("outputs")
            node_type = m.get("node_type", "")
            if out_ports is not None:
                out_ports = list(out_ports)
            # by_ref: true -> one return slot per declared port (large outputs
            # never leave the worker's node); false -> everything inline in one
            # return; absent/None -> slots once this node type has produced a
            # large output (learned), else inline (1 return is ~20% cheaper).
            by_ref = m.get("by_ref")
            if by_ref is None:
                by_ref = node_type in self.large_types
            use_slots = bool(by_ref) and out_ports is not None and len(out_ports) > 0
            meta = (task_id, node_type, m.get("settings") or "", descs, out_ports,
                    self.args.inline_threshold, use_slots, m.get("context") or {})
            num_returns = 1 + len(out_ports) if use_slots else 1
            fn = self.remote_fn(num_returns, (num_cpus, num_gpus, memory, custom, int(max_retries)))
            res = fn.remote(meta, *refs)
            refs_out = [res] if num_returns == 1 else list(res)
            timeout_ms = m.get("timeout_ms") or self.args.default_timeout_ms
            deadline = time.time() + timeout_ms / 1000.0 if timeout_ms else None
            t = Task(task_id, refs_out, node_type, deadline, req)
            t.keep_inline = m.get("by_ref") is False
            with self.lock:
                self.tasks[task_id] = t
            if deadline is not None:
                with self.dl_cv:
                    heapq.heappush(self.deadlines, (deadline, task_id))
                    self.dl_cv.notify()
            self.watch(t)
        except Exception as e:
            log("submit failed", traceback.format_exc())
            self.fail(task_id, "bad_request", "%s: %s" % (type(e).__name__, e))

    # -- completion collection ---------------------------------------------
    def watch(self, t):
        if self.args.collector == "callback":
            t.refs[0]._on_completed(lambda v, t=t: self.complete(t, v))
        else:
            self.wait_new.put((t.refs[0], t))

    def wait_loop(self):
        """--collector wait: ray.wait over a rotating window of the pending refs.

        One ray.wait over all 10k pending refs per loop is O(pending); a 256-ref
        window rotated through the pending set keeps each call cheap, and batched
        ray.get of the ready ones costs less CPU than a per-ref callback.
        """
        import collections

        import ray

        dq = collections.deque()   # (manifest ref, Task), oldest first
        scanned_empty = 0
        while not self.stop.is_set():
            try:
                while True:
                    dq.append(self.wait_new.get_nowait())
            except queue.Empty:
                pass
            if not dq:
                try:
                    dq.append(self.wait_new.get(timeout=0.5))
                except queue.Empty:
                    pass
                continue
            k = min(self.args.wait_window, len(dq))
            win = [dq.popleft() for _ in range(k)]
            refs = [r for r, _ in win]
            ready, _ = ray.wait(refs, num_returns=k, timeout=0, fetch_local=True)
            if not ready:
                dq.extend(win)
                scanned_empty += k
                if scanned_empty >= len(dq):  # a full rotation found nothing: block briefly
                    ray.wait(refs, num_returns=1, timeout=0.005, fetch_local=True)
                    scanned_empty = 0
                continue
            scanned_empty = 0
            rs = set(ready)
            done = [(r, t) for r, t in win if r in rs]
            dq.extend((r, t) for r, t in win if r not in rs)
            try:
                vals = ray.get([r for r, _ in done])
            except Exception:
                vals = []
                for r, _ in done:
                    try:
                        vals.append(ray.get(r))
                    except Exception as e:
                        vals.append(e)
            for (_, t), v in zip(done, vals):
                self.complete(t, v)

    def complete(self, t, v):
        """Called with the manifest value or an exception object."""
        with self.lock:
            if t.done:  # already reported (cancel / timeout)
                self.tasks.pop(t.task_id, None)
                return
            t.done = True
            self.tasks.pop(t.task_id, None)
        msg = {"type": "result", "task_id": t.task_id}
        if isinstance(v, BaseException):
            kind, text = classify(v, t.cancel_kind)
            msg.update(ok=False, outputs=[], error_kind=kind, message=text)
        else:
            ok, kind, text, mouts = v[:4]
            if len(v) > 5:
                msg.update(started_unix_us=v[4], logs=v[5])
            outs = []
            late_put = []
            thr = self.args.inline_threshold
            for (port, ct, size, data, slot) in mouts:
                o = {"port": port, "content_type": ct, "size": size}
                if slot is not None:
                    ref = t.refs[1 + slot]
                    h = ref.hex()
                    with self.lock:
                        self.objects[h] = ref
                    o["ref"] = h
                elif size > thr and not t.keep_inline:
                    # large output of an inline-mode task: keep it out of the host
                    # (ray.put by the driver, off the callback thread)
                    late_put.append((o, data))
                    self.large_types.add(t.node_type)
                else:
                    o["data"] = data
                outs.append(o)
            msg.update(ok=ok, outputs=outs, error_kind=kind, message=text)
            if late_put:
                t.refs = None
                self.fetch_pool.submit(self._put_and_send, msg, late_put)
                return
        t.refs = None  # drop the manifest and unused slots (frees them in Ray)
        self.outq.put(msg)

    def _put_and_send(self, msg, late_put):
        import ray

        try:
            for o, data in late_put:
                ref = ray.put(data)
                h = ref.hex()
                with self.lock:
                    self.objects[h] = ref
                o["ref"] = h
        except Exception as e:
            msg.update(ok=False, outputs=[], error_kind="infrastructure",
                       message="ray.put of a large output failed: %s" % e)
        self.outq.put(msg)

    # -- cancel / deadlines ------------------------------------------------
    def cancel_task(self, task_id, kind, force=False):
        import ray

        with self.lock:
            t = self.tasks.get(task_id)
            if t is None or t.done:
                return False
            t.done = True
            t.cancel_kind = kind
            refs = t.refs
        try:
            ray.cancel(refs[0], force=force, recursive=True)
            log("ray.cancel of task %d (%s)" % (task_id, kind))
        except Exception as e:
            log("ray.cancel failed:", e)
        if not force and self.args.force_cancel_after_ms:
            # A task stuck in native code ignores the non-force cancel: escalate.
            tm = threading.Timer(self.args.force_cancel_after_ms / 1000.0, self._force_cancel,
                                 args=(refs[0],))
            tm.daemon = True
            with self.lock:
                self.timers.add(tm)
            tm.start()
        msg = "task cancelled by host" if kind == "cancelled" else "task exceeded its deadline"
        self.outq.put({"type": "result", "task_id": task_id, "ok": False, "outputs": [],
                       "error_kind": kind, "message": msg})
        return True

    def _force_cancel(self, ref):
        import ray

        with self.lock:
            self.timers.discard(threading.current_thread())
        if self.stop.is_set() or not ray.is_initialized():
            return
        try:
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                ray.cancel(ref, force=True)
        except Exception:
            pass

    def deadline_loop(self):
        while not self.stop.is_set():
            with self.dl_cv:
                now = time.time()
                due = []
                while self.deadlines and self.deadlines[0][0] <= now:
                    due.append(heapq.heappop(self.deadlines)[1])
                if not due:
                    wait = self.deadlines[0][0] - now if self.deadlines else 0.5
                    self.dl_cv.wait(min(wait, 0.5))
                    continue
            for tid in due:
                self.cancel_task(tid, "timeout")

    def infeasible_loop(self):
        """Tasks whose resources no alive node has any more (node died) -> infeasible."""
        strikes = {}
        while not self.stop.wait(self.args.node_refresh_s):
            try:
                self.refresh_nodes(force=True)
            except Exception:
                continue
            with self.lock:
                live = [t for t in self.tasks.values() if not t.done]
            bad = set()
            for t in live:
                if not any(all(res.get(k, 0.0) + 1e-9 >= v for k, v in t.resources.items())
                           for res in self.node_res):
                    bad.add(t.task_id)
            strikes = {tid: strikes.get(tid, 0) + 1 for tid in bad}
            for tid, n in list(strikes.items()):
                if n * self.args.node_refresh_s * 1000 >= self.args.infeasible_grace_ms:
                    with self.lock:
                        t = self.tasks.get(tid)
                    if t is not None:
                        self.cancel_task(tid, "infeasible")
                    strikes.pop(tid, None)

    # -- fetch / release ---------------------------------------------------
    def on_fetch(self, m):
        import ray

        req_id = m.get("req_id")
        h = m.get("ref")
        obj = self.objects.get(h)
        if obj is None:
            self.outq.put({"type": "fetched", "req_id": req_id, "ref": h, "ok": False,
                           "data": None, "message": "unknown or released ref"})
            return

        def run():
            try:
                data = ray.get(obj, timeout=self.args.fetch_timeout_s)
                self.outq.put({"type": "fetched", "req_id": req_id, "ref": h, "ok": True,
                               "data": data, "message": ""})
            except Exception as e:
                kind, text = classify(e, None)
                self.outq.put({"type": "fetched", "req_id": req_id, "ref": h, "ok": False,
                               "data": None, "message": "%s: %s" % (kind, text)})

        self.fetch_pool.submit(run)

    def on_release(self, m):
        with self.lock:
            for h in m.get("refs") or []:
                self.objects.pop(h, None)

    # -- I/O ---------------------------------------------------------------
    def writer_loop(self):
        while True:
            m = self.outq.get()
            if m is None:
                return
            batch = [m]
            stop = False
            while len(batch) < 4096:
                try:
                    n = self.outq.get_nowait()
                except queue.Empty:
                    break
                if n is None:
                    stop = True
                    break
                batch.append(n)
            try:
                self.conn.write_many(batch)
            except OSError as e:
                log("write failed:", e)
                self.stop.set()
                return
            if stop:
                return

    def run(self):
        import concurrent.futures

        a = self.args
        try:
            os.unlink(a.socket)
        except FileNotFoundError:
            pass
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(a.socket)
        os.chmod(a.socket, 0o600)
        srv.listen(1)
        print("BACKPLANE_RAY_DRIVER_LISTENING %s" % a.socket, flush=True)
        srv.settimeout(a.accept_timeout_s)
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            log("no host connected within %ss" % a.accept_timeout_s)
            return 3
        finally:
            srv.close()
            try:
                os.unlink(a.socket)
            except OSError:
                pass
        sock.settimeout(None)
        self.conn = Conn(sock)
        wt = threading.Thread(target=self.writer_loop, name="writer", daemon=True)
        wt.start()
        try:
            self.start_ray()
            install_signal_handlers(self)  # ray.init installs its own SIGTERM handler
        except Exception as e:
            log("ray.init failed", traceback.format_exc())
            self.outq.put({"type": "fatal", "message": "ray.init failed: %s: %s" % (type(e).__name__, e)})
            self.outq.put(None)
            wt.join(5)
            return 2
        self.fetch_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fetch")
        self.outq.put(self.hello())
        threads = [threading.Thread(target=self.deadline_loop, name="deadlines", daemon=True),
                   threading.Thread(target=self.infeasible_loop, name="infeasible", daemon=True)]
        if a.collector == "wait":
            threads.append(threading.Thread(target=self.wait_loop, name="wait", daemon=True))
        for th in threads:
            th.start()
        self.threads = threads
        rc = 0
        try:
            while not self.stop.is_set():
                m = self.conn.read()
                if m is None:
                    log("host disconnected")
                    break
                t = m.get("type")
                if t == "submit":
                    self.on_submit(m)
                elif t == "cancel":
                    if not self.cancel_task(m["task_id"], "cancelled", bool(m.get("force"))):
                        pass  # unknown/finished task: nothing to do, no reply
                elif t == "fetch":
                    self.on_fetch(m)
                elif t == "release":
                    self.on_release(m)
                elif t == "ping":
                    with self.lock:
                        n_t, n_o = len(self.tasks), len(self.objects)
                    self.outq.put({"type": "pong", "req_id": m.get("req_id"),
                                   "in_flight": n_t, "objects": n_o,
                                   "nodes_alive": len(self.node_res)})
                elif t == "debug":  # diagnostics: which in-flight tasks are actually done in Ray?
                    import ray

                    with self.lock:
                        live = [(tid, tk.refs[0]) for tid, tk in self.tasks.items() if tk.refs]
                    ready = set()
                    if live:
                        rd, _ = ray.wait([r for _, r in live], num_returns=len(live), timeout=0.5,
                                         fetch_local=False)
                        ready = {r.hex() for r in rd}
                    self.outq.put({"type": "debug", "req_id": m.get("req_id"),
                                   "in_flight": [[tid, r.hex() in ready] for tid, r in live]})
                elif t == "shutdown":
                    break
                else:
                    log("unknown message type", t)
        except Exception:
            log("reader failed", traceback.format_exc())
            rc = 1
        self.shutdown()
        return rc

    def shutdown(self):
        import ray

        # Order matters: nothing may touch Ray after ray.shutdown() - Ray's C++ core
        # then exits the process (rc 1) and leaves its agents orphaned.
        self.stop.set()
        with self.lock:
            ids = [tid for tid, t in self.tasks.items() if not t.done]
        for tid in ids:
            self.cancel_task(tid, "cancelled", force=True)
        with self.dl_cv:
            self.dl_cv.notify_all()
        with self.lock:
            timers = list(self.timers)
        for tm in timers:
            tm.cancel()
        for th in self.threads + timers:
            th.join(2.0)
        if self.fetch_pool is not None:
            self.fetch_pool.shutdown(wait=True, cancel_futures=True)
        # let Ray deliver the completions of the cancelled tasks (their callbacks
        # deserialize through the core worker) before shutting it down
        t0 = time.time()
        while time.time() - t0 < 3.0:
            with self.lock:
                if not self.tasks:
                    break
            time.sleep(0.01)
        with self.lock:
            left = len(self.tasks)
        if left:
            log("%d task completions still pending at shutdown" % left)
        t0 = time.time()
        self.objects.clear()
        try:
            ray.shutdown()
        except Exception:
            log("ray.shutdown failed", traceback.format_exc())
        log("ray.shutdown took %.2fs" % (time.time() - t0))
        self.outq.put({"type": "bye"})
        self.outq.put(None)


def classify(e, cancel_kind):
    import ray.exceptions as rx

    text = str(e)
    if len(text) > 4000:
        text = text[:4000] + "..."
    if cancel_kind:
        return cancel_kind, text
    if isinstance(e, rx.TaskCancelledError):
        return "cancelled", text
    if isinstance(e, rx.WorkerCrashedError):
        return "crashed", text
    if isinstance(e, rx.OutOfMemoryError):
        return "oom", text
    if isinstance(e, (rx.NodeDiedError,)):
        return "infrastructure", text
    if isinstance(e, rx.ObjectLostError):
        return "lost", text
    if isinstance(e, rx.RayTaskError):
        return "node", text
    if isinstance(e, rx.GetTimeoutError):
        return "timeout", text
    return "infrastructure", "%s: %s" % (type(e).__name__, text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--address", default="local", help='"local" or an existing cluster (host:port)')
    p.add_argument("--node-ip-address", default=None, help="this node's IP (existing cluster)")
    p.add_argument("--temp-dir", default=None, help="local mode: Ray temp/session dir")
    p.add_argument("--num-cpus", type=float, default=None)
    p.add_argument("--resources", default=None, help="local mode: JSON custom resources")
    p.add_argument("--object-store-memory", type=int, default=None)
    p.add_argument("--inline-threshold", type=int, default=64 * 1024,
                   help="outputs larger than this stay in Ray as refs")
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--init-options", default=None, help="JSON: extra ray.init keyword arguments")
    p.add_argument("--default-timeout-ms", type=int, default=0)
    p.add_argument("--force-cancel-after-ms", type=int, default=2000)
    p.add_argument("--infeasible-grace-ms", type=int, default=5000)
    p.add_argument("--node-refresh-s", type=float, default=1.0)
    p.add_argument("--fetch-timeout-s", type=float, default=300)
    p.add_argument("--accept-timeout-s", type=float, default=60)
    p.add_argument("--collector", choices=["callback", "wait"], default="callback")
    p.add_argument("--wait-window", type=int, default=256, help="--collector wait: refs per ray.wait")
    p.add_argument("--keep-temp", action="store_true", help="local mode: keep Ray's temp dir")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--quiet-workers", action="store_true", help="don't forward worker logs")
    a = p.parse_args()
    # The driver reports every task error itself; Ray's "Unhandled error" log
    # lines for dropped refs of failed tasks are noise.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    # Never let a late ray.* call (timer/callback thread after ray.shutdown) start a
    # new private cluster through Ray's auto-init.
    os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
    if a.address == "local" and a.temp_dir is None:
        import tempfile

        # Ray's socket paths must stay < 108 bytes: keep the temp dir short.
        a.temp_dir = tempfile.mkdtemp(prefix="bpray-", dir="/tmp")
    a.num_cpus = None if a.num_cpus is None else int(a.num_cpus)

    d = Driver(a)
    install_signal_handlers(d)
    try:
        prof = os.environ.get("BP_DRIVER_PROFILE")  # dev aid: cProfile the reader/submit thread
        if prof:
            import cProfile

            pr = cProfile.Profile()
            rc = pr.runcall(d.run)
            pr.dump_stats(prof)
        else:
            rc = d.run()
    finally:
        if a.address == "local" and not a.keep_temp:
            import shutil

            shutil.rmtree(a.temp_dir, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # don't wait for non-daemon Ray threads


def install_signal_handlers(d):
    def on_signal(signum, _frame):
        log("signal", signum)
        d.stop.set()
        try:
            if d.conn is not None:
                # unblocks the reader -> orderly shutdown (cancel tasks, ray.shutdown)
                d.conn.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


if __name__ == "__main__":
    main()
