#!/usr/bin/env python3
"""pf.conf grammar check: pfctl's macro expansion, then pfctl's grammar (bison, no actions).
Usage: PFGRAM=<built parser> pfcheck.py FILE...  -> prints "FILE: OK" or the errors and
"FILE: REJECTED" per file; exit 0 if every file parses. Use the `pfcheck` wrapper.
(One process for all files: the test suite checks hundreds of rendered anchors.)"""
import os, re, subprocess, sys, tempfile


def expand(text):
    """pfctl's macro expansion: returns (expanded text, errors)."""
    macros, out, errs = {}, [], []
    for no, line in enumerate(text.split('\n'), 1):
        m = re.match(r'^\s*([A-Za-z0-9_]+)\s*=\s*"([^"]*)"\s*$', line)
        if m:
            macros[m.group(1)] = m.group(2)
            out.append(line); continue
        res, inq = [], None
        i = 0
        while i < len(line):
            c = line[i]
            if inq:
                res.append(c); inq = None if c == inq else inq; i += 1; continue
            if c in '"\'':
                inq = c; res.append(c); i += 1; continue
            if c == '#':
                res.append(line[i:]); break
            if c == '$':
                m = re.match(r'[A-Za-z0-9_]+', line[i+1:])
                name = m.group(0) if m else ''
                if name not in macros:
                    errs.append(f"line {no}: macro '{name}' not defined")
                    val = ''
                else:
                    val = macros[name]
                res.append(val); i += 1 + len(name); continue
            res.append(c); i += 1
        out.append(''.join(res))
    expanded = '\n'.join(out)
    if not expanded.endswith('\n'):
        expanded += '\n'
    return expanded, errs


def check(path):
    """Prints the verdict on one file; True when it parses."""
    expanded, errs = expand(open(path).read())
    with tempfile.NamedTemporaryFile('w', suffix='.pf', delete=False) as f:
        f.write(expanded)
    try:
        r = subprocess.run([os.environ['PFGRAM'], f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    report = list(errs)
    if r.stderr:
        lines = expanded.split('\n')
        for l in r.stderr.strip().split('\n'):
            m = re.match(r'line (\d+)', l)
            ctx = f"   <- {lines[int(m.group(1))-1].strip()}" if m and int(m.group(1)) <= len(lines) else ''
            report.append(l + ctx)
    ok = r.returncode == 0 and not errs
    print(f"{path}: " + '\n'.join(report + ['OK' if ok else 'REJECTED']))
    return ok


if __name__ == '__main__':
    results = [check(p) for p in sys.argv[1:]]
    sys.exit(0 if all(results) else 1)
