# Sourced by the VM tests: reporting helpers and device-mode switching.
# shellcheck shell=bash
ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; }
# check NAME COMMAND...: runs COMMAND, reports NAME.
check() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name: $(echo "$out" | tail -3 | tr '\n' ' ')"; fi
}
dax_name() { basename "${1:-$FAMFS_DAXDEV}"; }
dax_driver() { basename "$(readlink -f "/sys/bus/dax/devices/$(dax_name "$@")/driver")"; }
# set_dax_mode DRIVER: rebinds $FAMFS_DAXDEV to device_dax or fsdev_dax.
set_dax_mode() { "$(dirname "${BASH_SOURCE[0]}")/../daxmode" "$FAMFS_DAXDEV" "$1"; }

# report_backing_marker MARKER_FILE "OFFSET HEX": names the marker just poked through devdax for
# scripts/check-vm, whose watcher reads the host's backing file at once. Waits (up to 120 s) for
# that verdict, so that no later suite can write over the marker before the host has looked.
report_backing_marker() {
    mkdir -p .vm-out
    echo "$2" >"$1.tmp" && mv "$1.tmp" "$1"
    [ -e "$1.watched" ] || return 0 # run by hand: nobody on the host is looking
    local i
    for i in $(seq 600); do
        [ -s "$1.host" ] && return 0
        sleep 0.2
    done
    echo "# the host gave no verdict on $1 within 120 s"
}
