#!/bin/sh
# The main job on the default sample: describe the sample vmcore, serve it,
# and run a short gdb session against the server (threads, the panicking
# task's backtrace, a value from the dump). Called by `make sample`.
set -eu
BIN=${1:?usage: sample.sh BIN FIXTURE-DIR}
DIR=${2:?usage: sample.sh BIN FIXTURE-DIR}
VMLINUX=$DIR/kernel/vmlinux
VMCORE=$DIR/oom/vmcore.lzo
PORT=${SAMPLE_PORT:-1234}

echo "+ $BIN info $VMCORE"
"$BIN" info "$VMCORE"
echo
echo "+ $BIN serve --listen 127.0.0.1:$PORT $VMLINUX $VMCORE &"
"$BIN" serve --listen "127.0.0.1:$PORT" "$VMLINUX" "$VMCORE" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT INT TERM
sleep 1
echo "+ gdb -q -batch $VMLINUX -ex 'target remote 127.0.0.1:$PORT' -ex 'info threads' -ex bt -ex 'p init_uts_ns.name.release'"
gdb -q -batch -nx -ex 'set pagination off' "$VMLINUX" -ex "target remote 127.0.0.1:$PORT" \
	-ex 'info threads' -ex 'bt' -ex 'p init_uts_ns.name.release'
