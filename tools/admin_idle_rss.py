# RSS and descriptors of an agent holding N idle admin connections (docs/operations.md, the
# admin endpoint). usage: python3 tools/admin_idle_rss.py target/debug/autocluster 3000 65
import os, socket, subprocess, sys, tempfile, time, urllib.request
binary, n, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
d = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); admin = s.getsockname()[1]; s.close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); probe = s.getsockname()[1]; s.close()
conf = os.path.join(d, "node.conf")
open(conf, "w").write(f"""node.name = a@127.0.0.1
node.cookie = measure-cookie
node.listen = 127.0.0.1:{probe}
cluster.discovery = static
cluster.static.seeds = a@127.0.0.1
""")
agent = subprocess.Popen([binary, "agent", "-c", conf, "--admin", f"127.0.0.1:{admin}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{agent.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
def fds(): return len(os.listdir(f"/proc/{agent.pid}/fd"))
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/health/live", timeout=1); break
    except Exception: time.sleep(0.1)
print(f"idle: rss {rss()} MB, fds {fds()}")
import resource
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
conns = []
for i in range(n):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", admin))
    except BlockingIOError: pass
    conns.append(c)
peak_rss, peak_fds, t0 = 0, 0, time.time()
ready_ms = []
while time.time() - t0 < hold:
    peak_rss, peak_fds = max(peak_rss, rss()), max(peak_fds, fds())
    t = time.time()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/health/live", timeout=5); ready_ms.append((time.time()-t)*1000)
    except Exception as e: ready_ms.append(-1)
    time.sleep(1)
print(f"{n} idle connections held {hold:.0f} s: peak rss {peak_rss} MB, peak fds {peak_fds}, "
      f"rss at end {rss()} MB; /health/live answered {sum(1 for x in ready_ms if x>=0)}/{len(ready_ms)}, "
      f"max {max(ready_ms):.0f} ms")
for c in conns: c.close()
agent.terminate(); agent.wait()
