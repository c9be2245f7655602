#!/bin/bash
# Installs the IDE debug adapter the DAP test drives (cdt-gdb-adapter, the
# Debug Adapter Protocol server behind VS Code's and Theia's CDT `gdbtarget`
# debug type) from the npm registry into a cache outside git, once, and
# prints the path of its entry point:
#   ${VMCORE_FIXTURES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmcore-gdbserver}/npm/cdt-gdb-adapter-<version>/
# --check only says whether it is there (exit 1 if not).
# --ignore-scripts: the native pty module is built only for the adapter's
# own gdb console, which the test does not use; Node 20 runs it although
# the package asks for 22.
set -euo pipefail

VERSION=1.7.0
CACHE=${VMCORE_FIXTURES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmcore-gdbserver}
DIR=$CACHE/npm/cdt-gdb-adapter-$VERSION
ENTRY=$DIR/node_modules/cdt-gdb-adapter/dist/debugTargetAdapter.js

if [ -f "$ENTRY" ]; then
	echo "$ENTRY"
	exit 0
fi
if [ "${1:-}" = --check ]; then
	echo "cdt-gdb-adapter $VERSION missing in $DIR: run testdata/dap/adapter.sh (make dap-adapter)" >&2
	exit 1
fi

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get install -y -q --no-install-recommends nodejs npm >&2
	else
		echo "adapter.sh: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
		exit 1
	fi
fi

mkdir -p "$CACHE/npm"
# Install beside the final place, then rename: an interrupted install
# never looks finished.
tmp=$(mktemp -d "$CACHE/npm/.cdt-gdb-adapter-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error "cdt-gdb-adapter@$VERSION" >&2)
[ -f "$tmp/node_modules/cdt-gdb-adapter/dist/debugTargetAdapter.js" ] || {
	echo "adapter.sh: npm installed no cdt-gdb-adapter/dist/debugTargetAdapter.js in $tmp" >&2
	exit 1
}
if ! mv -T "$tmp" "$DIR" 2>/dev/null; then
	# Another run finished first; use its copy.
	[ -f "$ENTRY" ] || { echo "adapter.sh: cannot move $tmp to $DIR" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
echo "$ENTRY"
