#!/usr/bin/env python3
"""Checks of the Grafana dashboards and the alert rules, for deploy/prometheus/test_live.sh.

    check_dashboards.py static DASHBOARD_DIR
        The dashboards' structure: unique uids, schema version, the datasource,
        namespace and node variables, every query filtered by namespace and node,
        windows from $__rate_interval or $__range, panels inside the grid.

    check_dashboards.py live DASHBOARD_DIR PROMETHEUS_URL RULES_FILE
        Against a Prometheus scraping a running cluster: every panel query returns
        data (at least one finite value), every annotation and variable query
        evaluates, every alert rule is loaded, healthy and evaluates.

    check_dashboards.py await PROMETHEUS_URL SECONDS NAME EXPR
        Polls EXPR until it returns a finite value (one check, NAME).

Prints one `ok - ...` or `not ok - ...` line per check; exits 1 if any failed.
Standard library only.
"""

import glob
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SUBSTITUTIONS = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
    ("$namespace", ".*"),
    ("$node", ".*"),
]
NS_MATCH = 'namespace=~"$namespace"'
NODE_MATCH = 'node=~"$node"'
# Series of the node itself (every one carries the node label) and of its scrape.
METRIC = re.compile(r"\b((?:vc|process)_[a-z_]+|up)\b(\{[^}]*\})?")
RANGE = re.compile(r"\[([^\]]+)\]")

results = []


def report(ok, name, detail=""):
    results.append(ok)
    line = f"{'ok' if ok else 'not ok'} - {name}"
    if detail and not ok:
        line += f": {detail}"
    print(line, flush=True)


def load_dashboards(folder):
    dashboards = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as f:
            dashboards.append((os.path.basename(path), json.load(f)))
    return dashboards


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def queries_of(dashboard):
    """(panel title, refId, expr) of every panel target."""
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", "?"), target.get("refId", "?"), target["expr"]


def annotation_queries(dashboard):
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield annotation.get("name", "?"), annotation["expr"]


def substitute(expr):
    for variable, value in SUBSTITUTIONS:
        expr = expr.replace(variable, value)
    return expr


# -- static ------------------------------------------------------------------------
def check_static(folder):
    dashboards = load_dashboards(folder)
    report(len(dashboards) >= 5, f"{len(dashboards)} dashboards in {folder}")
    uids = [d.get("uid") for _, d in dashboards]
    report(len(set(uids)) == len(uids) and all(uids), f"uids set and unique: {uids}")
    for name, d in dashboards:
        problems = []
        if d.get("schemaVersion", 0) < 39:
            problems.append(f"schemaVersion {d.get('schemaVersion')}")
        if not d.get("title") or d.get("id") is not None:
            problems.append("title missing or id set")
        variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
        ds = variables.get("datasource", {})
        if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append("no datasource variable of type prometheus")
        for var, multi, query in (
            ("namespace", False, "label_values(vc_node_info, namespace)"),
            ("node", True, 'label_values(vc_node_info{namespace=~"$namespace"}, node)'),
        ):
            v = variables.get(var, {})
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if (q != query or not v.get("includeAll") or v.get("allValue") != ".*"
                    or bool(v.get("multi")) != multi):
                problems.append(f"variable {var}: {q!r}, includeAll {v.get('includeAll')}, "
                                f"allValue {v.get('allValue')!r}, multi {v.get('multi')}")
        ids = set()
        cells = set()
        for panel in panels_of(d):
            pid = panel.get("id")
            if pid in ids:
                problems.append(f"panel id {pid} twice")
            ids.add(pid)
            g = panel.get("gridPos", {})
            if g.get("x", 0) + g.get("w", 0) > 24 or g.get("w", 0) <= 0 or g.get("h", 0) <= 0:
                problems.append(f"panel {panel.get('title')!r} outside the grid: {g}")
            for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
                for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                    if (x, y) in cells:
                        problems.append(f"panel {panel.get('title')!r} overlaps another")
                        break
                    cells.add((x, y))
                else:
                    continue
                break
            if panel.get("type") == "row":
                continue
            sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            if any((s or {}).get("uid") != "${datasource}" for s in sources):
                problems.append(f"panel {panel.get('title')!r} does not use ${{datasource}}")
            if not panel.get("targets"):
                problems.append(f"panel {panel.get('title')!r} has no query")
        report(not problems, f"{name}: structure", "; ".join(problems))

        problems = []
        exprs = [(f"panel {t!r} {r}", e, True) for t, r, e in queries_of(d)]
        exprs += [(f"annotation {n!r}", e, False) for n, e in annotation_queries(d)]
        for where, expr, is_panel in exprs:
            for match in METRIC.finditer(expr):
                metric, labels = match.group(1), match.group(2) or ""
                if NS_MATCH not in labels:
                    problems.append(f"{where}: {metric} without {NS_MATCH}")
                # `up` has no node label: a scrape target that does not answer has none.
                if metric != "up" and NODE_MATCH not in labels:
                    problems.append(f"{where}: {metric} without {NODE_MATCH}")
            if is_panel:
                for window in RANGE.findall(expr):
                    if window not in ("$__rate_interval", "$__range"):
                        problems.append(f"{where}: window [{window}]")
        report(not problems, f"{name}: every query filtered by namespace and node",
               "; ".join(problems[:8]))


# -- live --------------------------------------------------------------------------
def api(base, path, params=None):
    url = f"{base}{path}"
    data = urllib.parse.urlencode(params).encode() if params else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return json.load(error)
        except ValueError:
            return {"status": "error", "error": f"HTTP {error.code}"}
    except (urllib.error.URLError, OSError) as error:
        return {"status": "error", "error": str(error)}


def query(base, expr):
    return api(base, "/api/v1/query", {"query": expr})


def finite_values(answer):
    data = answer.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector":
        values = [sample["value"][1] for sample in result]
    elif kind == "scalar":
        values = [result[1]]
    elif kind == "matrix":
        values = [v[1] for series in result for v in series["values"]]
    else:
        values = []
    return [float(v) for v in values if not math.isnan(float(v)) and not math.isinf(float(v))]


def check_live(folder, base, rules_file):
    dashboards = load_dashboards(folder)
    for name, d in dashboards:
        for title, ref, expr in queries_of(d):
            answer = query(base, substitute(expr))
            label = f"{name}: {title} [{ref}] has data"
            if answer.get("status") != "success":
                report(False, label, answer.get("error", "query failed"))
                continue
            values = finite_values(answer)
            report(bool(values), label, f"no finite value for {substitute(expr)}")
        for title, expr in annotation_queries(d):
            answer = query(base, substitute(expr))
            report(answer.get("status") == "success", f"{name}: annotation {title} evaluates",
                   answer.get("error", ""))
    # The variables' queries, as Grafana runs label_values().
    answer = api(base, "/api/v1/label/node/values?" + urllib.parse.urlencode(
        {"match[]": 'vc_node_info{namespace=~".*"}'}))
    nodes = answer.get("data") or []
    report(answer.get("status") == "success" and len(nodes) >= 3,
           f"variable node lists the nodes: {nodes}", answer.get("error", ""))
    answer = api(base, "/api/v1/label/namespace/values?" + urllib.parse.urlencode(
        {"match[]": "vc_node_info"}))
    report(answer.get("status") == "success", "variable namespace evaluates", answer.get("error", ""))

    # Alert rules: loaded, evaluated by Prometheus without error, and queryable.
    with open(rules_file, encoding="utf-8") as f:
        declared = re.findall(r"^\s*-\s*alert:\s*(\S+)", f.read(), re.M)
    answer = api(base, "/api/v1/rules")
    loaded = [rule for group in answer.get("data", {}).get("groups", []) for rule in group["rules"]
              if rule.get("type") == "alerting"]
    names = sorted(rule["name"] for rule in loaded)
    report(names == sorted(declared), f"{len(declared)} alert rules loaded",
           f"declared {sorted(declared)}, loaded {names}")
    for rule in loaded:
        healthy = rule.get("health") == "ok" and not rule.get("lastError")
        report(healthy, f"rule {rule['name']}: evaluated by Prometheus",
               f"health {rule.get('health')}, {rule.get('lastError')}")
        answer = query(base, rule["query"])
        firing = len(answer.get("data", {}).get("result", []) or [])
        report(answer.get("status") == "success", f"rule {rule['name']}: expression evaluates "
               f"({firing} series)", answer.get("error", ""))


def await_query(base, seconds, name, expr):
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    while True:
        answer = query(base, expr)
        if finite_values(answer):
            report(True, f"{name} ({time.monotonic() - started:.1f} s)")
            return
        if time.monotonic() > deadline:
            report(False, name, f"nothing for {expr} within {seconds:g} s "
                   f"({answer.get('error') or 'empty result'})")
            return
        time.sleep(0.5)


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "await":
        await_query(sys.argv[2].rstrip("/"), float(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) >= 3 and sys.argv[1] == "static":
        check_static(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "live":
        check_live(sys.argv[2], sys.argv[3].rstrip("/"), sys.argv[4])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
