#!/usr/bin/env bash
# compare.sh BIN FIXTURE-DIR: wall time of the same jobs with
# vmcore-gdbserver + gdb 13, drgn and crash on the same dumps (median of 3
# runs), as a markdown table. Installs crash and python3-drgn if missing.
# A tool that fails on a dump gets its exit status instead of a time.
set -uo pipefail
BIN=$(realpath "${1:?usage: compare.sh BIN FIXTURE-DIR}")
DIR=${2:?usage: compare.sh BIN FIXTURE-DIR}
VMLINUX=$DIR/kernel/vmlinux
for p in crash python3-drgn; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" >&2
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat >"$TMP/ps_bt.py" <<'PY'
from drgn.helpers.linux.pid import for_each_task
n = 0
for t in for_each_task(prog):
    prog.stack_trace(t)
    n += 1
print(n, "tasks")
PY
printf 'ps\nforeach bt\nexit\n' >"$TMP/crash.in"

# median of 3 wall times in seconds, or "fails (status N)"
timeit() {
	local ts=() i s e rc
	for i in 1 2 3; do
		s=$(date +%s.%N)
		"$@" >"$TMP/out" 2>&1
		rc=$?
		e=$(date +%s.%N)
		if [ $rc -ne 0 ]; then
			echo "fails (status $rc)"
			return
		fi
		ts+=("$(echo "$e - $s" | bc)")
	done
	printf '%s\n' "${ts[@]}" | sort -n | sed -n 2p | xargs printf '%.2f s'
}

gdbrun() { # dumps... -- gdb command
	local dumps=() c
	while [ "$1" != -- ]; do dumps+=("$1"); shift; done
	shift
	gdb -q -batch -nx "$VMLINUX" -ex "target remote | $BIN serve --stdio $VMLINUX ${dumps[*]}" -ex "$1"
}

# what each tool saw in its last run
gdb_threads() { grep -c '^[* ] *[0-9]\+ *Thread ' "$TMP/out"; }
gdb_bts() { grep -c '^Thread [0-9]\+ (Thread ' "$TMP/out"; }
drgn_tasks() { sed -n 's/^\([0-9]\+\) tasks$/\1/p' "$TMP/out"; }
crash_tasks() { grep -c '^[> ] \+[0-9]\+ \+-\?[0-9]\+ \+[0-9]\+ \+[0-9a-f]\{16\}' "$TMP/out"; }
crash_bts() { grep -c '^PID: ' "$TMP/out"; }

echo "| dump | gdb + server: info threads | gdb + server: thread apply all bt | drgn: every task's stack | crash: ps; foreach bt |"
echo "|---|---|---|---|---|"
for d in oom/vmcore.elf oom/vmcore.lzo qemu57/vmcore.elf qemu57/vmcore.kdump-zlib; do
	f=$DIR/$d
	a="$(timeit gdbrun "$f" -- "info threads") ($(gdb_threads) threads)"
	b="$(timeit gdbrun "$f" -- "thread apply all bt") ($(gdb_bts) stacks)"
	c=$(timeit drgn -q -c "$f" -s "$VMLINUX" "$TMP/ps_bt.py")
	case $c in fails*) ;; *) c="$c ($(drgn_tasks) tasks)" ;; esac
	e=$(timeit crash -s "$VMLINUX" "$f" -i "$TMP/crash.in")
	case $e in fails*) ;; *) e="$e ($(crash_tasks) tasks, $(crash_bts) stacks)" ;; esac
	echo "| $d | $a | $b | $c | $e |"
done
