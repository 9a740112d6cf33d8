#!/usr/bin/env python3
"""Memory per idle client connection (issue 20): the gatekit binary beside NGINX and
HAProxy, HTTP/1.1 keep-alive and h2c (prior knowledge), measured from outside.

Usage: scripts/idle-conns.py [N ...]          (default: 1000 5000 20000)
  env: GATEKIT_BINS="name=/path ..." (default "gatekit=target/release/gatekit", never
       built here), BACKEND_BIN (default: the bench_backend example, built with
       `cargo build --profile bench` into $CARGO_TARGET_DIR or target/),
       TARGETS="gk nginx haproxy" (a subset), PROTOS="h1 h2",
       HEADER_READ_TIMEOUT=10m (gatekit's limits.headerReadTimeout; "default" keeps
       the binary's 10 s, which closes idle HTTP/1 connections after 10 s).

For each target, protocol and N, on a proxy started afresh (pinned to core 0; this
script and the two bench_backend processes on core 1):
  1. wait until it serves; warm up with 50 requests over one connection of the
     protocol, close it; baseline = VmRSS and RssAnon of /proc/PID/status (of NGINX's
     worker) once stable (two reads 200 ms apart within 1%), and the latency of 200
     requests on one fresh connection;
  2. open N connections, each bound to a source address 127.0.0.2.. (256 addresses,
     so ephemeral ports do not run out), at most 64 opening at once; one request on
     each, response read in full, then the connection stays open and idle;
  3. once RSS is stable: (RSS - baseline) / N and (RssAnon - baseline) / N;
  4. latency (p50, p99) of 200 requests on one fresh connection while the N are open;
  5. how many of the N are still open (no EOF, no reset) after that; then all are
     closed (RST) and the proxy stopped.
Kernel socket buffers are not in any process's RSS and are not counted.

Proxy settings: gatekit `run --resources DIR --config FILE` with the manifests of
scripts/bench-binary.sh (Gateway with one HTTP listener serving HTTP/1.1 and h2c by
preface, HTTPRoute PathPrefix /, Service with two EndpointSlices to the two backends),
the settings file moving the admin port, raising limits.maxConnections above N and
limits.headerReadTimeout (see HEADER_READ_TIMEOUT). gatekit answers h2 idle connections
with a PING every 30 s and closes them 10 s later when unanswered (this client does not
read while idle): a run over 40 s would show it in the "open" column.
NGINX: 1 worker, worker_connections 2N + 1024 (NGINX closes idle keep-alive connections
once fewer than 1/16 of them are free), upstream keepalive 256 to both backends,
keepalive_timeout 10m, h2 on a `listen ... http2` port. HAProxy: nbthread 1, maxconn
N + 1024 and `no strict-limits` (it wants 2 descriptors per connection, and refuses to
start when the limit cannot be raised to that), timeout client / http-keep-alive 10m, h2 via `bind ... proto h2`.
The open-files limit of this script (and so of the proxies it starts) is raised to
N*2 + 4096 if it may (CAP_SYS_RESOURCE), else to its hard limit, and an N that does not
fit below that limit (less 1,024) is cut to it, with a note.
Loopback only; ports 19480-19485 (backends, NGINX, HAProxy), 19500+i (gatekit i) and
19600+i (gatekit i's admin) must be free.
"""
import asyncio
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = (19480, 19481)
NGINX_H1, NGINX_H2, HAPROXY_H1, HAPROXY_H2 = 19482, 19483, 19484, 19485
GK_PORT, GK_ADMIN = 19500, 19600
OPEN_CONCURRENCY = 64
LATENCY_REQUESTS = 200
IO_TIMEOUT = 10.0

H1_REQUEST = b'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'

# --- h2c by hand: preface, an empty SETTINGS frame, one HEADERS frame per request --------
H2_PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(kind, flags, stream, payload=b''):
    return struct.pack('>I', len(payload))[1:] + struct.pack('>BBI', kind, flags, stream) + payload


def h2_get(stream):
    # HPACK, static table only: :method GET (2), :scheme http (6), :path / (4), then
    # :authority as a literal without indexing, name index 1, raw (not Huffman) value.
    authority = b'127.0.0.1'
    block = b'\x82\x86\x84\x01' + bytes([len(authority)]) + authority
    return frame(HEADERS, END_STREAM | END_HEADERS, stream, block)


H2_OPEN = H2_PREFACE + frame(SETTINGS, 0, 0)


async def h2_response(reader, writer, stream):
    """Reads frames until `stream` ends; answers SETTINGS and PING. True if the
    response status was 200 (HPACK static index 8, as all three proxies send it)."""
    ok = False
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], 'big')
        kind, flags, sid = head[3], head[4], int.from_bytes(head[5:9], 'big') & 0x7FFFFFFF
        payload = await reader.readexactly(length) if length else b''
        if kind == SETTINGS and not flags & ACK:
            writer.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            writer.write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            raise ConnectionError('GOAWAY')
        elif kind == RST_STREAM and sid == stream:
            raise ConnectionError('RST_STREAM')
        elif kind == HEADERS and sid == stream:
            if payload[:1] == b'\x88':
                ok = True
            if flags & END_STREAM:
                return ok
        elif kind == DATA and sid == stream:
            if length:
                writer.write(frame(WINDOW_UPDATE, 0, 0, struct.pack('>I', length)))
            if flags & END_STREAM:
                return ok


async def h1_response(reader):
    """Reads one HTTP/1.1 response (Content-Length or chunked). True if 200."""
    head = await reader.readuntil(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    ok = lines[0].split(' ')[1:2] == ['200']
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(':')
        name = name.strip().lower()
        if name == 'content-length':
            length = int(value)
        elif name == 'transfer-encoding' and 'chunked' in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b'\r\n')).split(b';')[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return ok
    await reader.readexactly(length)
    return ok


class Conn:
    """One client connection; `stream` is the next h2 stream id."""

    def __init__(self, reader, writer, proto):
        self.reader, self.writer, self.proto, self.stream = reader, writer, proto, 1

    async def request(self):
        if self.proto == 'h1':
            self.writer.write(H1_REQUEST)
            return await h1_response(self.reader)
        sid = self.stream
        self.stream += 2
        self.writer.write(h2_get(sid))
        return await h2_response(self.reader, self.writer, sid)

    def is_open(self):
        return (not self.reader.at_eof() and self.reader.exception() is None
                and not self.writer.is_closing())

    def reset(self):
        sock = self.writer.get_extra_info('socket')
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            except OSError:
                pass
        self.writer.close()


IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the source port at connect(), per 4-tuple


async def connect(port, proto, source='127.0.0.1'):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ('127.0.0.1', port)),
                               IO_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    c = Conn(reader, writer, proto)
    if proto == 'h2':
        writer.write(H2_OPEN)
    return c


def source_address(i):
    k = i % 256
    return '127.0.%d.%d' % (1 + k // 250, 2 + k % 250)


async def open_idle(port, proto, n):
    """N connections, one request each, left open. Returns (open conns, errors)."""
    sem = asyncio.Semaphore(OPEN_CONCURRENCY)
    conns, errors = [], []

    async def one(i):
        async with sem:
            try:
                c = await connect(port, proto, source_address(i))
                conns.append(c)
                if not await asyncio.wait_for(c.request(), IO_TIMEOUT):
                    errors.append('non-200')
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ConnectionError, ValueError) as e:
                errors.append(type(e).__name__ + ': ' + str(e))

    await asyncio.gather(*(one(i) for i in range(n)))
    return conns, errors


async def latency(port, proto, k=LATENCY_REQUESTS):
    """k sequential requests on one fresh connection: (p50, p99) in ms, non-200 count."""
    c = await connect(port, proto)
    samples, bad = [], 0
    try:
        for _ in range(k):
            t = time.perf_counter()
            if not await asyncio.wait_for(c.request(), IO_TIMEOUT):
                bad += 1
            samples.append((time.perf_counter() - t) * 1e3)
    finally:
        c.reset()
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))], bad


# --- processes ------------------------------------------------------------------------

def status_kb(pid):
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'RssAnon'):
                out[key] = int(value.split()[0])
    return out['VmRSS'], out['RssAnon']


def stable_rss(pid, limit=10.0):
    """(VmRSS, RssAnon) in KB once two reads 200 ms apart are within 1% (or after
    `limit` seconds: then the last read, flagged)."""
    prev = status_kb(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cur = status_kb(pid)
        if abs(cur[0] - prev[0]) <= 0.01 * prev[0]:
            return cur, True
        prev = cur
    return prev, False


def wait_port(port, proc=None, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit('port %d never opened' % port)


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def manifests(port):
    a, b = BACKENDS
    return f'''apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: gw, namespace: default }}
spec:
  gatewayClassName: gatekit
  listeners: [{{ name: http, port: {port}, protocol: HTTP }}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: bench, namespace: default }}
spec:
  parentRefs: [{{ name: gw }}]
  rules:
  - matches: [{{ path: {{ type: PathPrefix, value: "/" }} }}]
    backendRefs: [{{ name: backend, port: 80 }}]
---
apiVersion: v1
kind: Service
metadata: {{ name: backend, namespace: default }}
spec:
  ports: [{{ name: http, port: 80 }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: backend-a, namespace: default, labels: {{ kubernetes.io/service-name: backend }} }}
addressType: IPv4
ports: [{{ name: http, port: {a} }}]
endpoints: [{{ addresses: ["127.0.0.1"], conditions: {{ ready: true }} }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{ name: backend-b, namespace: default, labels: {{ kubernetes.io/service-name: backend }} }}
addressType: IPv4
ports: [{{ name: http, port: {b} }}]
endpoints: [{{ addresses: ["127.0.0.1"], conditions: {{ ready: true }} }}]
'''


class Gatekit:
    def __init__(self, work, index, binary, header_timeout):
        self.binary = binary
        self.port, self.admin = GK_PORT + index, GK_ADMIN + index
        self.dir = os.path.join(work, 'gk-%d' % index)
        os.makedirs(os.path.join(self.dir, 'manifests'))
        with open(os.path.join(self.dir, 'manifests', 'bench.yaml'), 'w') as f:
            f.write(manifests(self.port))
        self.header_timeout = header_timeout

    def start(self, n):
        limits = 'maxConnections: %d' % max(100_000, n + 1024)
        if self.header_timeout != 'default':
            limits += ', headerReadTimeout: %s' % self.header_timeout
        config = os.path.join(self.dir, 'gatekit.yaml')
        with open(config, 'w') as f:
            f.write('admin: { address: "127.0.0.1:%d" }\nlimits: { %s }\n' % (self.admin, limits))
        log = open(os.path.join(self.dir, 'log'), 'ab')
        self.proc = subprocess.Popen(
            ['taskset', '-c', '0', self.binary, 'run', '--resources',
             os.path.join(self.dir, 'manifests'), '--config', config],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            if (http_ok('http://127.0.0.1:%d/readyz' % self.admin)
                    and http_ok('http://127.0.0.1:%d/' % self.port)):
                return self.proc.pid
            time.sleep(0.05)
        with open(os.path.join(self.dir, 'log')) as f:
            sys.stderr.write(f.read())
        raise SystemExit('gatekit %s never served' % self.binary)

    def stop(self):
        stop(self.proc)


class Nginx:
    def __init__(self, work):
        self.dir = os.path.join(work, 'nginx')
        os.makedirs(os.path.join(self.dir, 'logs'))

    def start(self, n):
        a, b = BACKENDS
        location = '''location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }'''
        conf = os.path.join(self.dir, 'nginx.conf')
        with open(conf, 'w') as f:
            f.write(f'''worker_processes 1;
worker_rlimit_nofile {min(n * 2 + 4096, nofile_limit())};
daemon off;
error_log {self.dir}/logs/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections {n * 2 + 1024}; }}
http {{
  access_log off;
  keepalive_timeout 10m;
  upstream app {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; keepalive 256; }}
  server {{ listen 127.0.0.1:{NGINX_H1} backlog=4096; {location} }}
  server {{ listen 127.0.0.1:{NGINX_H2} http2 backlog=4096; {location} }}
}}
''')
        self.proc = subprocess.Popen(['taskset', '-c', '0', 'nginx', '-p', self.dir, '-c', conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(NGINX_H1, self.proc)
        wait_port(NGINX_H2, self.proc)
        # The worker holds the connections; the master forks it after binding.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open('/proc/%d/task/%d/children' % (self.proc.pid, self.proc.pid)) as f:
                children = f.read().split()
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise SystemExit('nginx started no worker')

    def stop(self):
        stop(self.proc)


class Haproxy:
    def __init__(self, work):
        self.dir = os.path.join(work, 'haproxy')
        os.makedirs(self.dir)

    def start(self, n):
        a, b = BACKENDS
        cfg = os.path.join(self.dir, 'haproxy.cfg')
        with open(cfg, 'w') as f:
            f.write(f'''global
  nbthread 1
  maxconn {n + 1024}
  no strict-limits
defaults
  mode http
  timeout connect 5s
  timeout client 10m
  timeout http-keep-alive 10m
  timeout server 30s
frontend fe
  bind 127.0.0.1:{HAPROXY_H1}
  bind 127.0.0.1:{HAPROXY_H2} proto h2
  default_backend app
backend app
  balance roundrobin
  option forwardfor
  server a 127.0.0.1:{a}
  server b 127.0.0.1:{b}
''')
        self.proc = subprocess.Popen(['taskset', '-c', '0', 'haproxy', '-db', '-f', cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(HAPROXY_H1, self.proc)
        wait_port(HAPROXY_H2, self.proc)
        return self.proc.pid

    def stop(self):
        stop(self.proc)


# --- one measurement ------------------------------------------------------------------

async def warm_up(port, proto):
    c = await connect(port, proto)
    try:
        for _ in range(50):
            await asyncio.wait_for(c.request(), IO_TIMEOUT)
    finally:
        c.reset()


async def measure(proxy, port, proto, n):
    pid = proxy.start(n)
    t0 = time.monotonic()
    try:
        await warm_up(port, proto)
        await asyncio.sleep(0.3)
        (base_rss, base_anon), _ = stable_rss(pid)
        base_p50, base_p99, bad0 = await latency(port, proto)
        (base_rss, base_anon), _ = stable_rss(pid)
        opening = time.monotonic()
        conns, errors = await open_idle(port, proto, n)
        (rss, anon), stable = stable_rss(pid)
        p50, p99, bad1 = await latency(port, proto)
        await asyncio.sleep(0.1)  # lets the event loop take in any EOF or reset
        still_open = sum(1 for c in conns if c.is_open())
        held = time.monotonic() - opening  # the oldest connection's age at the count
        for c in conns:
            c.reset()
        await asyncio.sleep(0)
        return dict(base_rss=base_rss, base_anon=base_anon, rss=rss, anon=anon,
                    per_conn=(rss - base_rss) / n, per_conn_anon=(anon - base_anon) / n,
                    stable=stable, open=still_open, errors=errors, bad=bad0 + bad1,
                    base_lat=(base_p50, base_p99), lat=(p50, p99), held=held,
                    secs=time.monotonic() - t0)
    finally:
        proxy.stop()


def nofile_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n * 2 + 4096
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def backend_binary():
    if os.environ.get('BACKEND_BIN'):
        return os.environ['BACKEND_BIN']
    target = os.environ.get('CARGO_TARGET_DIR', os.path.join(ROOT, 'target'))
    subprocess.run(['cargo', 'build', '--locked', '-q', '--profile', 'bench',
                    '-p', 'gatekit-examples', '--example', 'bench_backend'],
                   cwd=ROOT, check=True)
    return os.path.join(target, 'release', 'examples', 'bench_backend')


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 5000, 20000]
    gk_bins = []
    for spec in os.environ.get('GATEKIT_BINS', 'gatekit=target/release/gatekit').split():
        name, _, path = spec.partition('=')
        if not path:
            raise SystemExit('GATEKIT_BINS entries are NAME=PATH: ' + spec)
        path = os.path.join(ROOT, path) if not os.path.isabs(path) else path
        if not os.access(path, os.X_OK):
            raise SystemExit('not an executable: ' + path)
        gk_bins.append((name, path))
    wanted = os.environ.get('TARGETS', 'gk nginx haproxy').split()
    protos = os.environ.get('PROTOS', 'h1 h2').split()
    header_timeout = os.environ.get('HEADER_READ_TIMEOUT', '10m')
    limit = raise_nofile(max(sizes))
    # This script and each proxy hold N descriptors plus their own; without the right
    # to raise the hard limit (CAP_SYS_RESOURCE), N is cut to what fits, and said so.
    fits = limit[0] - 1024
    if max(sizes) > fits:
        print('note: open-files limit %d (hard limit not raisable here): N above %d cut to %d'
              % (limit[0], fits, fits))
        sizes = sorted({min(n, fits) for n in sizes})
    os.sched_setaffinity(0, {1} if os.cpu_count() and os.cpu_count() > 1 else {0})
    backend = backend_binary()
    work = tempfile.mkdtemp(prefix='idle-conns-')
    helpers = []
    try:
        for port in BACKENDS:
            helpers.append(subprocess.Popen([backend, '127.0.0.1:%d' % port],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port, helpers[-1])
        targets = []
        if 'gk' in wanted:
            for i, (name, path) in enumerate(gk_bins):
                g = Gatekit(work, i, path, header_timeout)
                targets.append(('gk:' + name, g, {'h1': g.port, 'h2': g.port}))
        if 'nginx' in wanted:
            targets.append(('nginx', Nginx(work), {'h1': NGINX_H1, 'h2': NGINX_H2}))
        if 'haproxy' in wanted:
            targets.append(('haproxy', Haproxy(work), {'h1': HAPROXY_H1, 'h2': HAPROXY_H2}))
        print('idle connections: N =', ' '.join(map(str, sizes)), '| open-files limit', limit[0],
              '| gatekit headerReadTimeout', header_timeout, '| load average',
              ' '.join(open('/proc/loadavg').read().split()[:3]), flush=True)
        for name, path in gk_bins:
            print('  gk:%s = %s' % (name, path))
        rows = []
        for n in sizes:
            for proto in protos:
                for name, proxy, ports in targets:
                    r = asyncio.run(measure(proxy, ports[proto], proto, n))
                    rows.append((name, proto, n, r))
                    print('  %-14s %s N=%-6d %6.2f KB/conn  open %d/%d  oldest %.1f s  run %.1f s%s' % (
                        name, proto, n, r['per_conn'], r['open'], n, r['held'], r['secs'],
                        '' if not r['errors'] else '  %d errors, first: %s' % (
                            len(r['errors']), r['errors'][0])), file=sys.stderr, flush=True)
        print()
        print('%-14s %-5s %7s %10s %10s %9s %9s %8s %17s %17s %7s' % (
            'target', 'proto', 'N', 'KB/conn', 'anon KB/c', 'base MB', 'RSS MB', 'open',
            'base p50/p99 ms', 'idle p50/p99 ms', 'errors'))
        for name, proto, n, r in rows:
            print('%-14s %-5s %7d %10.2f %10.2f %9.1f %9.1f %8d %17s %17s %7d%s' % (
                name, proto, n, r['per_conn'], r['per_conn_anon'], r['base_rss'] / 1024,
                r['rss'] / 1024, r['open'], '%.2f/%.2f' % r['base_lat'], '%.2f/%.2f' % r['lat'],
                len(r['errors']) + r['bad'], '' if r['stable'] else '  (RSS not stable)'))
        print()
        print('KB/conn = (VmRSS with N idle - baseline) / N, in KiB; anon = the same for RssAnon;')
        print('open = connections with no EOF/reset after the latency run; p50/p99 = 200')
        print('sequential requests on one fresh connection, at baseline and with N idle open.')
    finally:
        for h in helpers:
            stop(h)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
