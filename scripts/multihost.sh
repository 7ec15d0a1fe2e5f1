# Sourced by multi-host tests: several famfs VMs sharing one CXL memory (the same /dev/shm file
# behind each VM's cxl-type3 device), each with its own system uuid, driven from the host.
#
#   mh_start NAME UUID CXL_FILE [VM-ARGS...]
#                                 start booting a VM running scripts/vm-agent (VM-ARGS: more
#                                 scripts/vm options, e.g. --dax-backend ram --second-dax-file F)
#   mh_ready NAME                 wait until it answers (boot VMs in parallel, then wait)
#   mh_run NAME SCRIPT            run SCRIPT (bash) in the VM; prints its output, returns its status
#   mh_stop NAME                  stop the VM
#   mh_kill NAME                  kill the VM (no clean stop: a host that dies)
# shellcheck shell=bash

MH_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MH_DIR=$MH_TOP/.vm-out/mh
declare -A MH_PID MH_N

mh_start() {
    local name=$1 uuid=$2 cxl=$3 dir=$MH_DIR/$1 i
    shift 3
    rm -rf "$dir"
    mkdir -p "$dir"
    MH_N[$name]=0
    "$MH_TOP/scripts/vm" --cpus 1 --memory 1536M --cxl-file "$cxl" --system-uuid "$uuid" "$@" \
        -- scripts/vm-agent ".vm-out/mh/$name" >"$dir/console.log" 2>&1 &
    MH_PID[$name]=$!
}

mh_ready() {
    local name=$1 dir=$MH_DIR/$1 i
    for i in $(seq 1 1800); do
        [ -e "$dir/ready" ] && return 0
        kill -0 "${MH_PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "multihost: VM $name did not come up; console:" >&2
    tail -20 "$dir/console.log" >&2
    return 1
}

mh_run() {
    local name=$1 script=$2 dir=$MH_DIR/$1 n i
    n=${MH_N[$name]}
    MH_N[$name]=$((n + 1))
    printf '%s\n' "$script" >"$dir/cmd.$n.tmp"
    mv "$dir/cmd.$n.tmp" "$dir/cmd.$n"
    for i in $(seq 1 3000); do
        if [ -e "$dir/rc.$n" ]; then
            cat "$dir/out.$n"
            return "$(cat "$dir/rc.$n")"
        fi
        kill -0 "${MH_PID[$name]}" 2>/dev/null || { echo "multihost: VM $name died" >&2; return 125; }
        sleep 0.1
    done
    echo "multihost: command $n on $name timed out" >&2
    return 124
}

mh_stop() {
    local name=$1
    touch "$MH_DIR/$name/stop"
    wait "${MH_PID[$name]}" 2>/dev/null || true
}

# mh_kill NAME: kills the VM at once (QEMU gets SIGTERM through scripts/vm, as when a host
# dies: nothing in the guest runs again), without the agent's clean stop.
mh_kill() {
    local name=$1
    kill -TERM "${MH_PID[$name]}" 2>/dev/null
    wait "${MH_PID[$name]}" 2>/dev/null || true
    unset "MH_PID[$name]"
}

# mh_check NAME TEST SCRIPT: runs SCRIPT on NAME and reports TEST.
MH_PASSED=0
MH_FAILED=0
# (mh_run must not run in a subshell: it counts the commands sent to each VM.)
mh_check() {
    local name=$1 test=$2 script=$3 out=$MH_DIR/$1.last
    if mh_run "$name" "$script" >"$out" 2>&1; then
        grep '^#' "$out"
        echo "ok - $test"
        MH_PASSED=$((MH_PASSED + 1))
    else
        echo "not ok - $test: $(tail -3 "$out" | tr '\n' ' ')"
        MH_FAILED=$((MH_FAILED + 1))
    fi
}

# dmesg_clean: run inside a guest (declare -f it into a script): no kernel warning since the
# test marker that vm-guest-init logs before famfs.ko is loaded (the single-VM suite's scan).
dmesg_clean() {
    local splat='BUG:|Oops|WARNING:|Call Trace:|KASAN|general protection|possible circular locking|possible recursive locking|inconsistent lock state|UBSAN'
    sleep 1
    if ! grep -q 'famfs-tests: start' /tmp/famfs-kmsg.log; then
        echo "the start marker is missing from /tmp/famfs-kmsg.log"
        return 1
    fi
    if sed -n '/famfs-tests: start/,$p' /tmp/famfs-kmsg.log | grep -E -B2 -A15 "$splat"; then
        return 1
    fi
}
