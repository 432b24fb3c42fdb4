#!/usr/bin/env python3
"""Where a load-test phase's time went, from two scrapes of the service's /metrics taken before
and after the phase: per histogram series, the observations the phase added, their mean, and how
many exceeded each of the (at most four) largest bucket bounds that any exceeded.

    loadtest/stages.py BEFORE.prom AFTER.prom

BEFORE may be /dev/null (the phase started with the service). One line per series, e.g.
    dutyflow_stage_duration_seconds{stage="store_commit"} n=1510 mean=0.0162 >0.025:61 >0.05:9
"""
import re
import sys

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def parse(path):
    """{(name, labels-without-le, le or None): value}"""
    out = {}
    with open(path) as f:
        for line in f:
            m = SAMPLE.match(line.strip())
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or '', float(m.group(3))
            le = None
            parts = re.findall(r'[a-zA-Z_]+="[^"]*"', labels)
            for p in parts:
                if p.startswith('le='):
                    le = p[4:-1]
            rest = ','.join(p for p in parts if not p.startswith('le='))
            out[(name, rest, le)] = value
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: stages.py BEFORE.prom AFTER.prom')
    before, after = parse(sys.argv[1]), parse(sys.argv[2])
    delta = lambda k: after.get(k, 0.0) - before.get(k, 0.0)
    for (name, labels, _) in sorted(k for k in after if k[0].endswith('_count')):
        base = name[: -len('_count')]
        n = delta((name, labels, None))
        if n <= 0:
            continue
        total = delta((base + '_sum', labels, None))
        line = f'{base}{{{labels}}} n={n:.0f} mean={total / n:.4g}'
        bounds = sorted(
            (float(le), le) for (nm, lb, le) in after if nm == base + '_bucket' and lb == labels and le != '+Inf'
        )
        over = [(le, n - delta((base + '_bucket', labels, le))) for _, le in bounds]
        # The largest four bounds that something exceeded.
        shown = [f'>{le}:{c:.0f}' for le, c in over if c > 0]
        line += ' ' + ' '.join(shown[-4:]) if shown else ''
        print(line)


if __name__ == '__main__':
    main()
