#!/usr/bin/env python3
"""RSS of a `gatekit run --resources` process idle, after N routes are written into it,
and after they are all deleted (issue 19: "back to within 20% of idle").

Usage: scripts/deletion-rss.py BIN MANIFESTS [PORT]   (PORT default 19300; PORT+1 admin)

MANIFESTS is what `live_change --write DIR N --port PORT` writes (gateway.yaml, ep.yaml,
ep-slice.yaml, routes-NNN.yaml with 100 routes each). The process starts on the first
three files only; idle RSS is read one second after /readyz. The route files are then
copied in (each written beside and renamed, as an atomic write) and RSS read one second
after the last route answers; then all are deleted and RSS read 1.5 s after that route
answers 404. Each figure is /proc/PID/smaps_rollup's Rss, with its anonymous and
file-backed parts. GKENV="K=V ..." adds variables to gatekit's environment (for example
GLIBC_TUNABLES or LD_PRELOAD). Loopback only; ports PORT and PORT+1 must be free.
"""
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

binary, src = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 19300
work = tempfile.mkdtemp(prefix='deletion-rss-')
for f in ('gateway.yaml', 'ep.yaml', 'ep-slice.yaml'):
    shutil.copy(os.path.join(src, f), work)
routes = sorted(f for f in os.listdir(src) if f.startswith('routes'))
settings = os.path.join(work, 'settings.yaml')
with open(settings, 'w') as f:
    f.write('admin: { address: "127.0.0.1:%d" }\n' % (port + 1))
env = dict(os.environ)
for kv in os.environ.get('GKENV', '').split():
    k, v = kv.split('=', 1)
    env[k] = v
resources = os.path.join(work, 'res')
os.makedirs(resources)
for f in ('gateway.yaml', 'ep.yaml', 'ep-slice.yaml'):
    shutil.move(os.path.join(work, f), resources)
proc = subprocess.Popen([binary, 'run', '--resources', resources, '--config', settings],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ready():
    for _ in range(6000):
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % (port + 1), timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit('gatekit did not become ready')


def status(host):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    c.request('GET', '/', headers={'Host': host})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def wait_for(host, done):
    for _ in range(4000):
        if done(status(host)):
            return
        time.sleep(0.05)
    raise SystemExit('no change seen for ' + host)


def rss():
    d = {}
    with open('/proc/%d/smaps_rollup' % proc.pid) as f:
        for line in f:
            k, v = line.split(':', 1)
            if k in ('Rss', 'Anonymous'):
                d[k] = int(v.split()[0]) / 1024
    return '%.1f MB (anonymous %.2f, file-backed %.2f)' % (d['Rss'], d['Anonymous'], d['Rss'] - d['Anonymous'])


try:
    ready()
    time.sleep(1)
    print('idle    ', rss())
    for f in routes:
        shutil.copy(os.path.join(src, f), os.path.join(resources, '.' + f))
        os.rename(os.path.join(resources, '.' + f), os.path.join(resources, f))
    # The last file's routes: r<N-100>..; any one of them tells the last file is served.
    n = 100 * len(routes)
    last = 'r%d.bench.test' % (n - 2)
    wait_for(last, lambda s: s != 404)
    time.sleep(1)
    print('written ', rss())
    for f in routes:
        os.remove(os.path.join(resources, f))
    wait_for(last, lambda s: s == 404)
    time.sleep(1.5)
    print('deleted ', rss())
finally:
    proc.kill()
    proc.wait()
    shutil.rmtree(work, ignore_errors=True)
