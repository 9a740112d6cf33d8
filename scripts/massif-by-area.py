#!/usr/bin/env python3
"""Where the heap of a running gatekit goes, by area, per route.

Usage: scripts/massif-by-area.py SNAPSHOT [ROUTES=5000]

SNAPSHOT is a valgrind massif detailed snapshot of the release binary:
  valgrind --tool=massif --vgdb=yes --threshold=0.01 --depth=40 \
      --massif-out-file=/tmp/massif.out target/release/gatekit run --resources DIR --config FILE &
  (wait for /readyz), then: vgdb --pid=PID detailed_snapshot /tmp/snap.txt
Each allocation site is counted under the area of its innermost gatekit frame (file cache,
translator, route table, metrics, balancer, ...); the figures are divided by ROUTES. The
manifests of docs/benchmarks.md come from `live_change --write DIR SIZE`."""
import re,sys,collections
lines=open(sys.argv[1]).read().split('\n')
n=int(sys.argv[2]) if len(sys.argv)>2 else 5000
start=[i for i,l in enumerate(lines) if 'heap allocation functions' in l][0]
entries=[]
for l in lines[start+1:]:
    m=re.match(r'^( *)n(\d+): (\d+) (.*)$',l)
    if m: entries.append((len(m.group(1)),int(m.group(3)),m.group(4)))
rules=[
 ('cache', r'FileCache|serde_yaml|serde_norway|k8s_openapi.*deserialize|Deserialize|manifest::'),
 ('translator', r'gatekit_k8s::'),
 ('route table', r'gatekit_core::route'),
 ('metrics', r'prometheus|metrics::|update_series|RouteSeries'),
 ('drain/retire', r'drain|Retire|retire'),
 ('lb/upstream', r'gatekit_lb'),
 ('upstreams wiring', r'wiring::upstreams'),
 ('wiring other', r'gatekit_gateway'),
 ('tokio', r'tokio::'),
]
tot=collections.Counter(); detail=collections.defaultdict(collections.Counter)
stack=[]
for idx,(d,sz,fr) in enumerate(entries):
    stack=stack[:d]; stack.append(fr)
    nxt=entries[idx+1][0] if idx+1<len(entries) else -1
    if nxt<=d:
        done=False
        for f in stack[1:]:
            for name,pat in rules:
                if re.search(pat,f):
                    g=[x for x in stack[1:] if 'gatekit' in x]
                    key=' <- '.join(re.sub(r'0x[0-9A-F]+: ','',x).split(' (')[0][-70:]+('('+x.split(' (')[-1] if ' (' in x else '') for x in g[:2])
                    tot[name]+=sz; detail[name][key]+=sz; done=True; break
            if done: break
        if not done: tot['other']+=sz; detail['other'][stack[-1][:80]]+=sz
print('heap total %.2f MB, %.0f B/route' % (sum(tot.values())/1e6, sum(tot.values())/n))
for k,v in tot.most_common():
    print(f'{v/1e6:7.2f} MB {v/n:6.0f} B/route  {k}')
    for f,s in detail[k].most_common(12):
        if s/n>=16: print(f'      {s/n:6.0f}  {f[:200]}')
