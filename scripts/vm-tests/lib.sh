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
