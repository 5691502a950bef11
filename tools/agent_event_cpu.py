# The CPU one agent spends per watch event (docs/benchmarks.md, the mesh): starts its own etcd
# on free loopback ports and one release agent, then writes N other members' keys, BATCH to
# a transaction (BATCH 1: one watch answer per event, as in a mesh where members start one by
# one), and prints the agent's CPU (every thread's schedstat) until it sees them all.
# usage: python3 tools/agent_event_cpu.py [target/release/autocluster] [N] [BATCH]
#        AGENT_ENV="TOKIO_WORKER_THREADS=1" python3 tools/agent_event_cpu.py ...
import base64, http.client, json, os, socket, subprocess, sys, tempfile, time, urllib.request
BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/autocluster"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
B = int(sys.argv[3]) if len(sys.argv) > 3 else 1
extra = dict(x.split("=", 1) for x in os.environ.get("AGENT_ENV", "").split() if x)

def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def cpu(pid):
    t = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try: t += int(open(f"/proc/{pid}/task/{task}/schedstat").read().split()[0])
        except OSError: pass
    return t / 1e9

d = tempfile.mkdtemp()
cp, pp, admin = free(), free(), free()
etcd = subprocess.Popen(["etcd", "--data-dir", d + "/etcd",
    "--listen-client-urls", f"http://127.0.0.1:{cp}", "--advertise-client-urls", f"http://127.0.0.1:{cp}",
    "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
    "--initial-cluster", f"default=http://127.0.0.1:{pp}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
agent = None
try:
    def call(path, body):
        c = http.client.HTTPConnection("127.0.0.1", cp, timeout=10)
        c.request("POST", path, json.dumps(body)); r = json.loads(c.getresponse().read()); c.close()
        return r
    b64 = lambda b: base64.b64encode(b).decode()
    for _ in range(200):
        try: call("/v3/kv/range", {"key": b64(b"x")}); break
        except OSError: time.sleep(0.1)
    open(d + "/a.conf", "w").write(
        "node.name = m00000@127.0.0.1\nnode.cookie = measure-cookie\ncluster.name = mesh\n"
        f"cluster.discovery = etcd\ncluster.etcd.server = http://127.0.0.1:{cp}\n"
        "cluster.etcd.prefix = mesh\ncluster.etcd.node_ttl = 10s\n")
    agent = subprocess.Popen([BIN, "agent", "-c", d + "/a.conf", "--admin", f"127.0.0.1:{admin}"],
        env=dict(os.environ, RUST_LOG="warn", **extra), stdout=subprocess.DEVNULL,
        stderr=open(d + "/a.log", "w"))
    def get(path):
        return urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=2)
    for _ in range(600):
        try:
            if get("/health/ready").status == 200: break
        except OSError: time.sleep(0.1)
    else: sys.exit(f"the agent never became ready; its log: {d}/a.log")
    key = b"/mesh/mesh/nodes/m00000@127.0.0.1"
    own = base64.b64decode(call("/v3/kv/range", {"key": b64(key)})["kvs"][0]["value"])
    lease = call("/v3/lease/grant", {"TTL": 600})["ID"]
    def members():
        for l in get("/metrics").read().decode().splitlines():
            if l.startswith("autocluster_members"): return float(l.split()[-1])
        return -1
    time.sleep(1)
    c0, t0 = cpu(agent.pid), time.time()
    conn = http.client.HTTPConnection("127.0.0.1", cp, timeout=10)
    for j in range(0, N, B):
        ops = []
        for i in range(j + 1, min(N, j + B) + 1):
            name = f"m{i + 100000:06d}@127.0.0.1".encode()
            ops.append({"request_put": {"key": b64(b"/mesh/mesh/nodes/" + name),
                "value": b64(own.replace(b"m00000@127.0.0.1", name)), "lease": lease}})
        conn.request("POST", "/v3/kv/txn", json.dumps({"success": ops})); conn.getresponse().read()
    t1 = time.time()
    deadline = time.time() + 120
    while members() < N + 1:
        if time.time() > deadline: sys.exit(f"the agent saw {members()} of {N + 1} in 120 s")
        time.sleep(0.05)
    c = cpu(agent.pid) - c0
    print(f"{N} events, {B} to an answer, written in {t1 - t0:.2f} s; agent CPU {1000 * c:.0f} ms "
          f"({1e6 * c / N:.0f} us/event)")
finally:
    if agent: agent.terminate(); agent.wait()
    etcd.terminate(); etcd.wait()
