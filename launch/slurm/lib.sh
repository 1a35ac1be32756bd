# lib.sh - helpers shared by start-cluster.sh and stop-cluster.sh (sourced).

# alive PID: the process exists and is not a zombie
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# daemon_pid PIDFILE WORD...: the pid in PIDFILE if that process is alive and
# its command line contains every WORD (a recycled pid does not match)
daemon_pid() {
    local file=$1 pid cmd w
    shift
    [ -s "$file" ] || return 1
    pid=$(tr -dc 0-9 <"$file")
    [ -n "$pid" ] && alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    for w; do [[ " $cmd " == *" $w "* ]] || return 1; done
    echo "$pid"
}
