#!/usr/bin/env bash
# Real OpenSSH servers on loopback addresses, standing in for the hosts of a custom cluster.
#
#   sshd-hosts.sh start N [--deps-site DIR]   start N sshd (127.0.0.2 ... 127.0.0.N+1)
#   sshd-hosts.sh stop                        stop every sshd this script started (by pid)
#   sshd-hosts.sh rekey I                     give host I a new host key (a "reinstalled" host)
#   sshd-hosts.sh status                      print "ADDRESS:PORT PID" per running host
#
# Run as root; idempotent (a host already running is left alone). No systemd needed: each host
# is `/usr/sbin/sshd -f CONFIG` with its own config, host key and pid file under $ESS_SSHD_DIR
# (default /var/tmp/ess-sshd), listening on port $ESS_SSHD_PORT (default 2222) of its own
# loopback address only. Every host accepts one user ($ESS_SSHD_USER, default esstest) with one
# key: $ESS_SSHD_DIR/client_key (ed25519, root-owned, 0600; its .pub is the authorized key).
#
# --deps-site DIR: the Python dependencies of ess for the test user come "from the machine": a
# .pth file in the user's site directory names DIR (the master's site-packages), so a venv made
# with --system-site-packages on a "host" finds dask & co while ess itself is the shipped wheel.
set -euo pipefail

DIR="${ESS_SSHD_DIR:-/var/tmp/ess-sshd}"
PORT="${ESS_SSHD_PORT:-2222}"
USER_NAME="${ESS_SSHD_USER:-esstest}"
SSHD=/usr/sbin/sshd

die() { echo "sshd-hosts: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root"

ensure_packages() {
  local need=()
  [[ -x $SSHD ]] || need+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
  if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

ensure_user() {
  if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$USER_NAME"
  fi
  # '*' rather than the '!' of a fresh account: sshd refuses any login to a locked account.
  usermod -p '*' "$USER_NAME"
  local home
  home=$(getent passwd "$USER_NAME" | cut -d: -f6)
  install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "$home/.ssh"
  if [[ ! -f $DIR/client_key ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "ess-test-client" -f "$DIR/client_key"
  fi
  chmod 600 "$DIR/client_key"
  # appended, not replaced: several scratch dirs (tests, benchmark) may share the test user
  local auth="$home/.ssh/authorized_keys"
  touch "$auth"
  grep -qxF "$(cat "$DIR/client_key.pub")" "$auth" || cat "$DIR/client_key.pub" >>"$auth"
  chown "$USER_NAME:$USER_NAME" "$auth"
  chmod 600 "$auth"
}

ensure_deps_site() {
  local site="$1" home user_site
  home=$(getent passwd "$USER_NAME" | cut -d: -f6)
  user_site=$(su -s /bin/sh "$USER_NAME" -c 'cd / && python3 -m site --user-site')
  install -d -o "$USER_NAME" -g "$USER_NAME" "$home/.local" "$home/.local/lib"
  su -s /bin/sh "$USER_NAME" -c "mkdir -p '$user_site'"
  printf '%s\n' "$site" >"$user_site/ess-test-deps.pth"
  chown "$USER_NAME:$USER_NAME" "$user_site/ess-test-deps.pth"
}

host_dir() { echo "$DIR/host-$1"; }
address() { echo "127.0.0.$(($1 + 1))"; }

# the pid in host I's pid file, if that process is our sshd (its cmdline names our config)
running_pid() {
  local h pid
  h=$(host_dir "$1")
  [[ -f $h/sshd.pid ]] || return 1
  pid=$(cat "$h/sshd.pid")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$h/sshd_config" || return 1
  echo "$pid"
}

write_config() {
  local i="$1" h
  h=$(host_dir "$i")
  cat >"$h/sshd_config" <<EOF
ListenAddress $(address "$i"):$PORT
HostKey $h/ssh_host_ed25519_key
PidFile $h/sshd.pid
AllowUsers $USER_NAME
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
}

start_host() {
  local i="$1" h
  h=$(host_dir "$i")
  mkdir -p "$h"
  chmod 755 "$h"
  if running_pid "$i" >/dev/null; then return 0; fi
  [[ -f $h/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C "host-$i" -f "$h/ssh_host_ed25519_key"
  write_config "$i"
  rm -f "$h/sshd.pid"
  "$SSHD" -f "$h/sshd_config" -E "$h/sshd.log"
  for _ in $(seq 100); do
    running_pid "$i" >/dev/null && return 0
    sleep 0.05
  done
  die "sshd of host $i did not start (see $h/sshd.log)"
}

stop_host() {
  local i="$1" pid
  if pid=$(running_pid "$i"); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$(host_dir "$i")/sshd.pid"
}

hosts_known() {
  local d
  for d in "$DIR"/host-*; do
    [[ -d $d ]] && echo "${d##*/host-}"
  done | sort -n
}

cmd="${1:-}"
shift || true
case "$cmd" in
  start)
    n="${1:-3}"
    shift || true
    deps=""
    while (($#)); do
      case "$1" in
        --deps-site) deps="$2"; shift 2 ;;
        *) die "unknown option $1" ;;
      esac
    done
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 200 ]] || die "bad host count $n"
    ensure_packages
    mkdir -p "$DIR" /run/sshd
    chmod 755 "$DIR"
    chmod 755 /run/sshd
    ensure_user
    [[ -z $deps ]] || ensure_deps_site "$deps"
    for i in $(seq 1 "$n"); do start_host "$i"; done
    ;;
  stop)
    for i in $(hosts_known); do stop_host "$i"; done
    ;;
  rekey)
    i="${1:?host number}"
    h=$(host_dir "$i")
    [[ -d $h ]] || die "no host $i"
    stop_host "$i"
    rm -f "$h/ssh_host_ed25519_key" "$h/ssh_host_ed25519_key.pub"
    start_host "$i"
    ;;
  status)
    for i in $(hosts_known); do
      if pid=$(running_pid "$i"); then echo "$(address "$i"):$PORT $pid"; fi
    done
    ;;
  *)
    die "usage: $0 start N [--deps-site DIR] | stop | rekey I | status"
    ;;
esac
