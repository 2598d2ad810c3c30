#!/usr/bin/env python3
# The import graph of a crate's modules must have no cycle: at each level
# (the top-level modules, then the files inside each directory), which module
# uses which sibling through `crate::` or `super::` paths outside its tests.
# Usage: modgraph.py SRC_DIR...; prints each cycle found and exits 1 if any.
import glob
import os
import re
import sys


def modules(root):
    code = {}
    for f in glob.glob(root + '/**/*.rs', recursive=True):
        path = os.path.relpath(f, root)[:-3].split('/')
        if path[-1] in ('mod', 'lib', 'main'):
            path = path[:-1]
        src = open(f).read().split('#[cfg(test)]')[0]
        src = '\n'.join(l for l in src.split('\n') if not l.lstrip().startswith('//'))
        code[tuple(path)] = src
    return code


def uses(path, src):
    out = {tuple(m.split('::')) for m in re.findall(r'\bcrate::((?:\w+::)*\w+)', src)}
    parent = list(path[:-1])
    out |= {tuple(parent + [m]) for m in re.findall(r'\bsuper::(\w+)', src)}
    for group in re.findall(r'\bsuper::\{([^}]*)\}', src):
        out |= {tuple(parent + [d]) for d in re.findall(r'\b(\w+)\b', group)}
    return out


def cycles(graph):
    found, state = [], {}

    def visit(n, trail):
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                found.append(trail + [n, d])
            elif not state.get(d):
                visit(d, trail + [n])
        state[n] = 2

    for n in sorted(graph):
        if not state.get(n):
            visit(n, [])
    return found


def check(root):
    code = modules(root)

    def resolve(t):
        while t and t not in code:
            t = t[:-1]
        return t

    bad = 0
    for depth in sorted({len(p) for p in code} - {0}):
        graph = {}
        for path, src in code.items():
            if len(path) < depth:
                continue
            a = path[:depth]
            for used in uses(path, src):
                b = resolve(used)[:depth]
                if len(b) == depth and a != b and a[:-1] == b[:-1]:
                    graph.setdefault(a, set()).add(b)
        for c in cycles(graph):
            print(f'{root}: cycle: ' + ' -> '.join('::'.join(x) for x in c))
            bad += 1
    return bad


bad = sum(check(root) for root in sys.argv[1:])
print('no cycle' if not bad else f'{bad} cycle(s)')
sys.exit(1 if bad else 0)
