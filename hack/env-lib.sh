# shellcheck shell=bash disable=SC2034 # The sourcing scripts use these variables.
# Process handling shared by env-up.sh and env-down.sh: pid files, free ports,
# readiness waits and stopping. Source it after lib.sh; do not run it.

ENV_RUN_DIR="$MCO_ENV_DIR/run"
ENV_LOG_DIR="$MCO_ENV_DIR/logs"
ENV_PKI_DIR="$MCO_ENV_DIR/pki"
DEFAULT_ENV_FILE="$MCO_ENV_DIR/env"

# Components in start order. env-down stops them in reverse order.
ENV_COMPONENTS=(etcd kube-apiserver fakecloud emulator-proxy)

# Seconds each component has to become ready, and to exit after SIGTERM.
MCO_ENV_START_TIMEOUT="${MCO_ENV_START_TIMEOUT:-120}"
MCO_ENV_STOP_TIMEOUT="${MCO_ENV_STOP_TIMEOUT:-15}"

# Takes the environment's lock, so env-up and env-down never run at once on
# the same MCO_ENV_DIR. The lock lasts until the script exits. Bash stores the
# lock's file descriptor in ENV_LOCK_FD, and launch_component closes it in
# every component, so a running component never holds the lock.
acquire_env_lock() {
    mkdir -p "$MCO_ENV_DIR"
    exec {ENV_LOCK_FD}>"$MCO_ENV_DIR/lock"
    flock -n "$ENV_LOCK_FD" ||
        die "another env-up.sh or env-down.sh is running on $MCO_ENV_DIR; wait for it and retry"
}

# Prints the start time of a process in clock ticks since boot (field 22 of
# /proc/PID/stat), or fails if there is no such process or it is a zombie.
# The pid and this time together identify a process even after pid reuse.
process_start_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # The command name (field 2) may contain spaces, so split after its ')'.
    local -a fields
    read -r -a fields <<<"${stat##*) }"
    [[ ${fields[0]} != Z ]] || return 1
    printf '%s\n' "${fields[19]}"
}

pid_file() {
    printf '%s/%s.pid\n' "$ENV_RUN_DIR" "$1"
}

start_ticks_file() {
    printf '%s/%s.start-ticks\n' "$ENV_RUN_DIR" "$1"
}

# Prints the pid of a component this environment started, or fails if its pid
# file is missing or the process is gone. A live process with the same pid but
# another start time is some other program and does not count.
component_pid() {
    local name=$1 pid expected_ticks actual_ticks
    pid="$(cat "$(pid_file "$name")" 2>/dev/null)" || return 1
    expected_ticks="$(cat "$(start_ticks_file "$name")" 2>/dev/null)" || return 1
    actual_ticks="$(process_start_ticks "$pid")" || return 1
    [[ $actual_ticks == "$expected_ticks" ]] || return 1
    printf '%s\n' "$pid"
}

# Lists the components that are running, in start order.
running_components() {
    local name
    for name in "${ENV_COMPONENTS[@]}"; do
        if component_pid "$name" >/dev/null; then
            printf '%s\n' "$name"
        fi
    done
}

remove_pid_files() {
    rm -f "$(pid_file "$1")" "$(start_ticks_file "$1")"
}

# Starts COMMAND in its own session, so that it outlives the calling shell and
# a Ctrl-C in the terminal does not reach it, with stdout and stderr in
# logs/NAME.log. Records its pid and start time under run/.
# Usage: launch_component NAME COMMAND [ARG...]
launch_component() {
    local name=$1
    shift
    mkdir -p "$ENV_RUN_DIR" "$ENV_LOG_DIR"
    # A background child of a non-interactive shell is not a process group
    # leader, so setsid calls setsid(2) and execs without forking and $! is
    # the component's own pid. NO_COLOR keeps ANSI escapes out of the logs of
    # the Rust components, which use tracing-subscriber.
    NO_COLOR=1 setsid "$@" </dev/null >"$ENV_LOG_DIR/$name.log" 2>&1 {ENV_LOCK_FD}>&- &
    local pid=$!
    printf '%s\n' "$pid" >"$(pid_file "$name")"
    process_start_ticks "$pid" >"$(start_ticks_file "$name")" ||
        die "$name exited right after launch; see $ENV_LOG_DIR/$name.log"
}

print_log_tail() {
    local log_file="$ENV_LOG_DIR/$1.log"
    log "last 30 lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
}

# Runs CHECK until it succeeds. Returns 1 if the component exits first and 2
# if MCO_ENV_START_TIMEOUT seconds pass first.
# Usage: wait_until_ready NAME CHECK [ARG...]
wait_until_ready() {
    local name=$1
    shift
    local deadline=$((SECONDS + MCO_ENV_START_TIMEOUT))
    while ! "$@"; do
        if ! component_pid "$name" >/dev/null; then
            return 1
        fi
        if ((SECONDS >= deadline)); then
            return 2
        fi
        sleep 0.2
    done
}

# Prints COUNT distinct TCP ports on 127.0.0.1 that are free right now. The
# sockets stay bound until all are chosen, so no port is printed twice.
# Another program can still take a port before the component binds it, so
# callers retry with new ports when a component fails with EADDRINUSE.
pick_free_ports() {
    python3 - "$1" <<'PY'
import socket
import sys

sockets = []
for _ in range(int(sys.argv[1])):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sockets.append(sock)
print(" ".join(str(sock.getsockname()[1]) for sock in sockets))
PY
}

# Sends SIGTERM to a component this environment started, waits up to
# MCO_ENV_STOP_TIMEOUT seconds, then sends SIGKILL. Removes its pid files.
# Fails only if the process is still alive after SIGKILL.
stop_component() {
    local name=$1 pid
    if ! pid="$(component_pid "$name")"; then
        if [[ -e "$(pid_file "$name")" ]]; then
            log "$name is not running; removing its stale pid file"
        fi
        remove_pid_files "$name"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for_exit "$name" "$MCO_ENV_STOP_TIMEOUT"; then
        log "$name did not exit within ${MCO_ENV_STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for_exit "$name" 5 || {
            log "error: $name (pid $pid) is still running after SIGKILL"
            return 1
        }
    fi
    remove_pid_files "$name"
}

# Waits up to SECONDS for a component to exit.
wait_for_exit() {
    local name=$1 deadline=$((SECONDS + $2))
    while component_pid "$name" >/dev/null; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# Stops every component in reverse start order. Tries all of them even when
# one fails, then fails if any did.
stop_environment() {
    local failed=0 i
    for ((i = ${#ENV_COMPONENTS[@]} - 1; i >= 0; i--)); do
        stop_component "${ENV_COMPONENTS[i]}" || failed=1
    done
    return "$failed"
}
