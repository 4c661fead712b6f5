#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-metrics: iomemctl metrics against the real iomemd: valid exposition text, values that match what the
# test did, and the per-uid rule (root sees every uid, another uid only its own) as other uids via setpriv.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CHECK="$PYTHON3 $(dirname "$0")/openmetrics-check.py"

# as UID GID CMD...: run a command as another uid/gid (no passwd entry needed); iomemctl as OTHER_IOMEMCTL
# (stage_iomemctl in lib.sh: the build tree may be under /root, 0700)
as() {
        local uid=$1 gid=$2
        shift 2
        [ "$1" != "$IOMEMCTL" ] || set -- "$OTHER_IOMEMCTL" "${@:2}"
        setpriv --reuid "$uid" --regid "$gid" --clear-groups "$@"
}

# value JSONFILE KEY: one sample's value from openmetrics-check's output ("missing" if absent)
value() {
        "$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], "missing"))' "$1" "$2"
}

# expect_value JSONFILE KEY WANT
expect_value() {
        local got
        got=$(value "$1" "$2")
        [ "$got" = "$3" ] || fail "$2 = $got, want $3 ($1)"
}

# The checker itself must refuse what is not valid exposition text (else the checks below prove nothing).
bad_texts=(
        $'# HELP a_total x\n# TYPE a counter\na_total 1\n# EOF\n'          # HELP and TYPE of different families
        $'# HELP a x\n# TYPE a counter\na 1\n# EOF\n'                      # counter sample without _total
        $'# HELP a x\n# TYPE a gauge\na 1\n'                               # no # EOF
        $'# HELP a x\n# TYPE a gauge\na 1\n# EOF\na 2\n'                   # text after # EOF
        $'a 1\n# HELP a x\n# TYPE a gauge\n# EOF\n'                        # sample before HELP/TYPE
        $'# HELP a x\n# TYPE a gauge\na{u="1"} 1\na{u="1"} 2\n# EOF\n'     # sample twice
        $'# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n# EOF\n' # family not contiguous
        $'# HELP a x\n# TYPE a gauge\na one\n# EOF\n'                      # not a number
        $'# HELP a x\n# TYPE a gauge\na{u=1} 1\n# EOF\n'                   # unquoted label value
        $'# HELP a x\n# TYPE a gauge\n\na 1\n# EOF\n'                      # blank line
)
for t in "${bad_texts[@]}"; do
        if printf '%s' "$t" | $CHECK openmetrics >/dev/null 2>&1; then
                fail "openmetrics-check accepted: $t"
        fi
done
printf '# HELP a x\n# TYPE a counter\na_total{u="1"} 1\n# EOF\n' | $CHECK openmetrics >/dev/null \
        || fail "openmetrics-check refused a valid text"

# usage errors, without a daemon
expect_err "metrics bad format" 2 "metrics: unknown format 'xml'" "$IOMEMCTL" metrics xml
expect_err "metrics two formats" 2 "metrics: unexpected argument" "$IOMEMCTL" metrics openmetrics prometheus

printf '[uid 1500]\nquota-regions = 1\n' >"$TMP/iomemd.conf"
start_daemon --config "$TMP/iomemd.conf"
chmod 0755 "$TMP"

# what the test does: N creates by root, 2 failed STATs, 3 OPENs (read), and as uid 1500 one create and one refused
N=4
for i in $(seq 1 $N); do
        expect_ok "create m$i" ctl create "m$i" 4K --mode 0644
done
expect_err "stat missing" 1 "stat nope: " ctl stat nope
expect_err "stat missing again" 1 "stat nope: " ctl stat nope
for i in 1 2 3; do
        ctl read m1 --length 1 >/dev/null || fail "read m1"
done
can_switch=0
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
        can_switch=1
        stage_iomemctl
        expect_ok "create as 1500" as 1500 1600 "$IOMEMCTL" --socket "$SOCK" create u1 8K
        expect_err "quota as 1500" 1 "create u2: " as 1500 1600 "$IOMEMCTL" --socket "$SOCK" create u2 4K
fi

# as root (the test's uid): valid OpenMetrics text, and values that match
ctl metrics >"$TMP/om.txt" || fail "metrics"
$CHECK openmetrics <"$TMP/om.txt" >"$TMP/om.json" || fail "metrics output is not valid OpenMetrics text"
[ "$(tail -n 1 "$TMP/om.txt")" = "# EOF" ] || fail "# EOF is not the last line"
me=$(id -u)
expect_value "$TMP/om.json" 'iomemd_regions' $((N + can_switch))
expect_value "$TMP/om.json" 'iomemd_region_bytes' $((N * 4096 + can_switch * 8192))
expect_value "$TMP/om.json" 'iomemd_connections' 1
expect_value "$TMP/om.json" 'iomemd_requests_total{request="CREATE"}' $((N + 2 * can_switch))
expect_value "$TMP/om.json" 'iomemd_requests_total{request="OPEN"}' 3
expect_value "$TMP/om.json" 'iomemd_request_errors_total{request="OPEN"}' 0
expect_value "$TMP/om.json" 'iomemd_request_errors_total{request="STAT"}' 2
expect_value "$TMP/om.json" 'iomemd_errors_total{code="ENOENT"}' 2
expect_value "$TMP/om.json" 'iomemd_requests_total{request="METRICS"}' 1
expect_value "$TMP/om.json" "iomemd_uid_regions{uid=\"$me\"}" $N
expect_value "$TMP/om.json" "iomemd_uid_region_bytes{uid=\"$me\"}" $((N * 4096))
expect_value "$TMP/om.json" 'iomemd_keepers' 0
if [ $can_switch -eq 1 ]; then
        expect_value "$TMP/om.json" 'iomemd_errors_total{code="EDQUOT"}' 1
        expect_value "$TMP/om.json" 'iomemd_quota_refusals_total' 1
        expect_value "$TMP/om.json" 'iomemd_uid_regions{uid="1500"}' 1
        expect_value "$TMP/om.json" 'iomemd_uid_region_bytes{uid="1500"}' 8192
        expect_value "$TMP/om.json" 'iomemd_uid_quota_refusals_total{uid="1500"}' 1
        expect_value "$TMP/om.json" "iomemd_uid_quota_refusals_total{uid=\"$me\"}" 0
fi

# the Prometheus 0.0.4 form and JSON carry the same samples
ctl metrics prometheus >"$TMP/prom.txt" || fail "metrics prometheus"
$CHECK prometheus <"$TMP/prom.txt" >"$TMP/prom.json" || fail "metrics prometheus output is not valid"
grep -q '^# EOF' "$TMP/prom.txt" && fail "prometheus format has # EOF"
ctl --json metrics >"$TMP/m.json" || fail "metrics --json"
"$PYTHON3" - "$TMP/om.json" "$TMP/prom.json" "$TMP/m.json" <<'PY' || fail "the three formats disagree"
import json, sys
om, prom, js = (json.load(open(p)) for p in sys.argv[1:])
assert js["truncated"] is False
flat = {}
for s in js["samples"]:
    assert s["type"] in ("counter", "gauge") and (s["type"] == "counter") == s["name"].endswith("_total"), s
    key = s["name"] + ("{%s}" % ",".join('%s="%s"' % kv for kv in s["labels"].items()) if s["labels"] else "")
    assert key not in flat, key
    flat[key] = s["value"]
assert set(flat) == set(om) == set(prom), (set(flat) ^ set(om), set(om) ^ set(prom))
# between the three requests only the counters of requests and connections may have moved
for k in om:
    if "requests_total" in k or "connections_accepted" in k or "uptime" in k:
        continue
    assert om[k] == prom[k] == flat[k], (k, om[k], prom[k], flat[k])
PY

# the per-uid rule: another uid sees the daemon-wide totals and its own uid, nobody else's
if [ $can_switch -eq 1 ]; then
        for who in 1500 1501; do
                as $who $((who + 100)) "$IOMEMCTL" --socket "$SOCK" metrics >"$TMP/u.txt" || fail "metrics as $who"
                $CHECK openmetrics <"$TMP/u.txt" >"$TMP/u.json" || fail "metrics as $who: not valid OpenMetrics"
                expect_value "$TMP/u.json" 'iomemd_regions' $((N + 1))
                expect_value "$TMP/u.json" 'iomemd_quota_refusals_total' 1
                expect_value "$TMP/u.json" "iomemd_uid_connections{uid=\"$who\"}" 1
                others=$(grep -E '^iomemd_uid_' "$TMP/u.txt" | grep -v "{uid=\"$who\"}" || true)
                [ -z "$others" ] || fail "uid $who sees other uids: $others"
        done
        expect_value "$TMP/u.json" 'iomemd_uid_regions{uid="1501"}' 0
        as 1500 1600 "$IOMEMCTL" --socket "$SOCK" metrics | $CHECK openmetrics >"$TMP/u.json"
        expect_value "$TMP/u.json" 'iomemd_uid_regions{uid="1500"}' 1
        expect_value "$TMP/u.json" 'iomemd_uid_quota_refusals_total{uid="1500"}' 1
else
        echo "not root or no setpriv: the per-uid rule across uids is not checked here (test-conn checks it)"
fi

stop_daemon
finish
