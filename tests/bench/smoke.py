#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""smoke: run iomem-bench --quick; every scenario must run and print well-formed JSON (no timing asserted)."""
import json
import os
import subprocess
import sys
import tempfile

EXPECTED = [
    "floor-socketpair", "floor-shm-open", "open-map", "open-map-cached", "create-delete", "create-anon", "cold-open",
    "clients-1", "clients-8", "clients-64", "clients-512",
    "dp-pipe-copy", "dp-handover", "dp-pipe-read", "dp-read", "dp-read-populate", "dp-read-populate-read",
    "dp-read-hugepage", "dp-read-premapped", "dp-handover-notify",
    "open-small-table", "regions-rss", "open-big-table", "idle-connections", "floor-pipe-wake", "publish-notified",
    "publish-rtt",
    # issue 15: the cold floor and cold rows; the data plane with huge pages and reserved memory
    "floor-cold", "floor-cold-epoll", "cold-small-table", "cold-big-table",
    # the cold floor measured interleaved with each cold row: the cold target's verdict is against these
    "floor-cold-small", "floor-cold-big",
    "dp-handover-huge", "dp-read-huge", "dp-read-premapped-huge",
    "dp-handover-reserve", "dp-read-reserve", "dp-read-premapped-reserve",
    "dp-handover-huge-reserve", "dp-read-huge-reserve", "dp-read-premapped-huge-reserve",
    # scenario 6's informational parked configuration, its OPENs split into held and parked names
    "parked-small-table", "parked-regions-rss", "parked-big-table", "parked-big-held", "parked-big-parked",
]
NUMBERS = ["clients", "ops", "seconds", "ops_per_s", "p50_us", "p99_us", "p999_us"]
TARGETS = 17
INFO = {"parked big/small p50", "parked: held-name/small p50", "parked: parked/held-name p50",
        "cold small/floor ops", "cold big/floor ops"}


def main():
    bench = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "quick.jsonl")
        proc = subprocess.run([bench, "--quick", "--json", out], stdout=subprocess.PIPE, timeout=240)
        if proc.returncode != 0:
            sys.exit(f"iomem-bench exited with {proc.returncode}")
        with open(out) as f:
            lines = [json.loads(line) for line in f]  # raises on malformed JSON
    scenarios = {}
    targets = []
    for obj in lines[1:]:
        if "scenario" in obj:
            for key in NUMBERS:
                if not isinstance(obj.get(key), (int, float)):
                    sys.exit(f"{obj['scenario']}: '{key}' missing or not a number")
            if obj["ops"] <= 0:
                sys.exit(f"{obj['scenario']}: no operation ran")
            scenarios[obj["scenario"]] = obj
        elif "target" in obj:
            targets.append(obj)
        else:
            sys.exit(f"unexpected line: {obj}")
    if lines[0].get("meta") != "iomem-bench":
        sys.exit("first line is not the meta line")
    missing = [s for s in EXPECTED if s not in scenarios]
    if missing:
        sys.exit(f"scenarios that did not run: {missing}")
    for key, scen in (("rss_per_region_bytes", "regions-rss"), ("rss_per_connection_bytes", "idle-connections")):
        if not isinstance(scenarios[scen].get(key), (int, float)):
            sys.exit(f"{scen}: '{key}' missing")
    if len(targets) != TARGETS or any(t["verdict"] not in ("PASS", "MISS") for t in targets if t["target"] not in INFO):
        sys.exit(f"targets not all computed: {targets}")
    info = [t for t in targets if t["target"] in INFO]
    if len(info) != len(INFO) or any(t["verdict"] != "INFO" or t["value"] < 0 for t in info):
        sys.exit(f"informational targets not all computed, or given a verdict: {info}")
    # scenario 6 says what it ran: the daemon's fd limit, where it came from, and what was parked
    for scen in ("open-big-table", "cold-big-table", "parked-big-table", "parked-big-held", "parked-big-parked"):
        obj = scenarios[scen]
        for key in ("daemon_nofile", "region_fds", "parked", "keepers"):
            if not isinstance(obj.get(key), int):
                sys.exit(f"{scen}: '{key}' missing or not an integer")
        if obj.get("nofile_from") not in ("unit", "fallback", "inherited"):
            sys.exit(f"{scen}: 'nofile_from' is {obj.get('nofile_from')!r}")
    big, held, parked = scenarios["parked-big-table"], scenarios["parked-big-held"], scenarios["parked-big-parked"]
    if not 0 < big["region_fds"] < big["parked"]:
        sys.exit(f"parked-big-table: {big['region_fds']} region fds held, {big['parked']} parked: most should be parked")
    if "%d parked" % big["parked"] not in big["desc"]:
        sys.exit(f"parked-big-table: the description does not say what was parked: {big['desc']}")
    verdict = next(t for t in targets if t["target"] == "open big/small table p50")
    if ("RLIMIT_NOFILE %d" % scenarios["open-big-table"]["daemon_nofile"]) not in verdict["desc"]:
        sys.exit(f"the table-size verdict does not say the daemon's fd limit: {verdict['desc']}")
    if scenarios["open-big-table"]["nofile_from"] == "fallback" and "FALLBACK" not in verdict["desc"]:
        sys.exit(f"the table-size verdict ran on the fallback limit without saying so: {verdict['desc']}")
    # the cold target's verdict says which floor it uses: the one measured alternating with its cold row
    for row, floor, target in (("cold-small-table", "floor-cold-small", "cold small/adj-floor ops"),
                               ("cold-big-table", "floor-cold-big", "cold big/adj-floor ops")):
        if scenarios[floor].get("adjacent_to") != row or scenarios[row].get("adjacent_floor") != floor:
            sys.exit(f"{floor} and {row} do not name each other: {scenarios[floor]} {scenarios[row]}")
        if not isinstance(scenarios[floor].get("rounds"), int) or scenarios[floor]["rounds"] < 2:
            sys.exit(f"{floor}: 'rounds' missing or under 2")
        verdict = next((t for t in targets if t["target"] == target), None)
        if not verdict or verdict["verdict"] not in ("PASS", "MISS"):
            sys.exit(f"no verdict for {target}: {verdict}")
        if abs(verdict["value"] - scenarios[row]["ops_per_s"] / scenarios[floor]["ops_per_s"]) > 1e-3:
            sys.exit(f"{target} is not {row}'s ops/s over {floor}'s: {verdict}")
    if "floor-cold-small" not in next(t for t in targets if t["target"] == "cold small/adj-floor ops")["desc"]:
        sys.exit("the cold verdict does not say which floor it uses")
    print(f"ok: {len(scenarios)} scenarios, {len(targets)} targets")


if __name__ == "__main__":
    main()
