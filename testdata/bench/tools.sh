#!/bin/bash
# Installs the tools `make bench` compares this project with, when missing:
# Debian 12's crash (8.0.2), python3-drgn (0.0.22, /usr/bin/drgn) and gdb.
# Debian's drgn is enough for the 4.18 and 6.1 kdumps (../shared/reference/
# measured.md: both it and upstream list and unwind every 4.18 task); it
# cannot read the QEMU dumps or unwind 6.12, and those rows say so.
# The apt lists are refreshed first when older than 6 hours (or absent), or
# when an install from them fails, as mkfixtures.sh does. Prints nothing on
# stdout; --check only says whether everything is there (exit 1 if not).
set -euo pipefail

PACKAGES=(crash python3-drgn gdb)

missing=()
for p in "${PACKAGES[@]}"; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "${1:-}" = --check ]; then
	echo "bench tools missing: ${missing[*]} (run testdata/bench/tools.sh)" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "tools.sh: need root and apt-get to install ${missing[*]}" >&2
	exit 1
fi

lists_stale() {
	local newest
	newest=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -printf '%T@\n' 2>/dev/null | sort -n | tail -n 1)
	[ -z "$newest" ] && return 0
	[ $(($(date +%s) - ${newest%.*})) -gt 21600 ]
}

export DEBIAN_FRONTEND=noninteractive
updated=0
if lists_stale; then
	echo "tools.sh: apt-get update" >&2
	apt-get update -q >&2
	updated=1
fi
echo "tools.sh: installing ${missing[*]}" >&2
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
	[ "$updated" = 1 ] && exit 1
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
