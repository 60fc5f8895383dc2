#!/usr/bin/env bash
# host-setup.sh - get a Debian 12 host ready to run cimid and its tests (as root).
#
# Usage: systemd/host-setup.sh [--quiet]
#
# Safe to run again and again; when everything is already in place it takes about a second.
#   1. Installs the Debian packages cimid needs, if any is missing.
#   2. Starts virtlogd and libvirtd unless they already run (however they were started).
#      With systemd as PID 1 this goes through systemctl. Without systemd, both are started
#      detached; libvirtd runs in the foreground under `tini -s`, a child subreaper, so QEMU
#      processes that exit are reaped at once (otherwise each domain stop waits for PID 1 to
#      reap, ~1.5 s on hosts whose init reaps lazily). libvirtd errors go to
#      /var/log/libvirt/libvirtd.log.
#   3. Waits until libvirt answers on qemu:///system.
#   4. Gives the QEMU user read/write access to /dev/kvm when the device exists but is not
#      usable by it (group kvm, mode g+rw).
#   5. Chooses the guest domain type: kvm only when QEMU can use /dev/kvm and the CPU shows
#      hardware virtualization (vmx/svm); qemu (TCG emulation) otherwise. Some nested hosts
#      offer a software /dev/kvm without vmx/svm on which guest kernels barely make progress,
#      so /dev/kvm alone is not enough. The choice is printed and written to
#      /run/cimid/host.env as CIMID_DOMAIN_TYPE=kvm|qemu.
#   6. Reports whether NAT networks can work here (dnsmasq, iptables, IP forwarding); cimid makes
#      its default network isolated where they cannot.
#
# Options:
#   --quiet   print only the line that says which hypervisor guests run under
#
# Environment:
#   CIMID_EXTRA_PKGS     more Debian packages to install, separated by spaces
#   CIMID_DOMAIN_TYPE    kvm or qemu: skip the detection and use this domain type
#   CIMID_LIBVIRT_WAIT   seconds to wait for libvirtd to answer (default 60)
set -Eeuo pipefail

PROG=host-setup
QUIET=0
for arg in "$@"; do
  case "$arg" in
    --quiet) QUIET=1 ;;
    -h|--help) sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "$PROG: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { [ "$QUIET" = 1 ] || echo "$PROG: $*"; }
warn() { echo "$PROG: warning: $*" >&2; }
die() { echo "$PROG: error: $*" >&2; exit 1; }
trap 'echo "$PROG: error: command failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts libvirtd)"

export DEBIAN_FRONTEND=noninteractive
URI=qemu:///system
RUN_DIR=/run/cimid
ENV_FILE=$RUN_DIR/host.env
LIBVIRT_LOG=/var/log/libvirt/libvirtd.log
WAIT_SECS=${CIMID_LIBVIRT_WAIT:-60}

mkdir -p "$RUN_DIR"
# One run at a time: `make run` and `make test` may start together.
exec 9>"$RUN_DIR/host-setup.lock"
flock -w 300 9 || die "another host-setup run holds $RUN_DIR/host-setup.lock"

SYSTEMD=0
if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  SYSTEMD=1
fi

# ---------------------------------------------------------------------------------------
# 1. Packages
packages=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev
          qemu-system-x86 qemu-utils pkg-config dnsmasq-base iptables
          genisoimage python3-yaml)  # the last two for tests: they read cloud-init seeds back
[ "$SYSTEMD" = 1 ] || packages+=(tini)
if [ -n "${CIMID_EXTRA_PKGS:-}" ]; then
  read -r -a extra <<<"$CIMID_EXTRA_PKGS"
  packages+=("${extra[@]}")
fi

# Prints the packages among "$@" that are not installed.
missing_packages() {
  local installed
  installed=" $(dpkg-query -W -f='${db:Status-Status}:${Package} ' "$@" 2>/dev/null || true) "
  local p
  for p in "$@"; do
    [[ "$installed" == *" installed:$p "* ]] || echo "$p"
  done
}

mapfile -t missing < <(missing_packages "${packages[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_log=$(mktemp /tmp/cimid-host-setup-apt.XXXXXX)
  apt_install() {
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" >>"$apt_log" 2>&1
  }
  apt_update() {
    apt-get update -q >>"$apt_log" 2>&1 \
      || { tail -n 20 "$apt_log" >&2; die "apt-get update failed (log: $apt_log)"; }
  }
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt_update
  if ! apt_install; then
    say "install failed with the current package lists; updating them and trying again"
    apt_update
    apt_install || { tail -n 30 "$apt_log" >&2; die "apt-get install failed (log: $apt_log)"; }
  fi
  rm -f "$apt_log"
else
  say "packages present"
fi

# ---------------------------------------------------------------------------------------
# 2. /dev/kvm access for the QEMU user (before libvirtd probes QEMU's capabilities)
QEMU_USER=$(sed -n -E 's/^[[:space:]]*user[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' \
  /etc/libvirt/qemu.conf 2>/dev/null | tail -n 1 || true)
QEMU_USER=${QEMU_USER:-libvirt-qemu}
QEMU_USER=${QEMU_USER#+}   # qemu.conf may name the user by number as "+N"

kvm_usable() {
  [ -c /dev/kvm ] || return 1
  case "$QEMU_USER" in root|0) return 0 ;; esac
  runuser -u "$(id -un "$QEMU_USER")" -- sh -c 'test -r /dev/kvm && test -w /dev/kvm' 2>/dev/null
}

if [ -c /dev/kvm ] && ! id "$QEMU_USER" >/dev/null 2>&1; then
  warn "QEMU user '$QEMU_USER' does not exist; cannot check /dev/kvm access"
elif [ -c /dev/kvm ] && ! kvm_usable; then
  say "/dev/kvm ($(stat -c '%U:%G %a' /dev/kvm)) is not usable by $QEMU_USER: granting group kvm rw"
  getent group kvm >/dev/null || groupadd --system kvm
  qemu_name=$(id -un "$QEMU_USER")
  [[ " $(id -nG "$qemu_name") " == *" kvm "* ]] || usermod -a -G kvm "$qemu_name"
  chgrp kvm /dev/kvm
  chmod g+rw /dev/kvm
  kvm_usable || warn "$QEMU_USER still cannot open /dev/kvm ($(stat -c '%U:%G %a' /dev/kvm))"
fi

# ---------------------------------------------------------------------------------------
# 3. Daemons
libvirt_answers() { virsh -q -c "$URI" version >/dev/null 2>&1; }

# Prints the PIDs of processes whose command name is $1.
pids_named() {
  local f name
  for f in /proc/[0-9]*/comm; do
    read -r name <"$f" 2>/dev/null || continue
    if [ "$name" = "$1" ]; then f=${f#/proc/}; echo "${f%/comm}"; fi
  done
}

started_pid=""
if [ "$SYSTEMD" = 1 ]; then
  if libvirt_answers; then
    say "libvirt already answers on $URI"
  else
    say "starting virtlogd and libvirtd with systemctl"
    systemctl start virtlogd.socket virtlogd.service libvirtd.service
  fi
else
  mkdir -p /var/log/libvirt /run/libvirt
  if [ -n "$(pids_named virtlogd)" ]; then
    say "virtlogd already running"
  else
    say "starting virtlogd"
    setsid /usr/sbin/virtlogd -d </dev/null >/dev/null 2>&1 9>&-
  fi

  libvirtd_pids=$(pids_named libvirtd)
  if [ -n "$libvirtd_pids" ]; then
    say "libvirtd already running (pid ${libvirtd_pids//$'\n'/ }): leaving it alone"
    for pid in $libvirtd_pids; do
      ppid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      if [ "$ppid" = 1 ]; then
        say "note: that libvirtd has no subreaper; every domain stop may take ~1.5 s longer"
      fi
    done
  elif libvirt_answers; then
    say "libvirt already answers on $URI"
  else
    say "starting libvirtd under tini -s (log: $LIBVIRT_LOG)"
    (
      # The daemon must not keep the caller's descriptors (the lock, make's pipes) open.
      for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        [ "$fd" -gt 2 ] && eval "exec $fd>&-"
      done
      export LIBVIRT_LOG_OUTPUTS="3:file:$LIBVIRT_LOG"
      exec setsid /usr/bin/tini -s -- /usr/sbin/libvirtd </dev/null >>"$LIBVIRT_LOG" 2>&1
    ) &
    started_pid=$!
    disown "$started_pid" 2>/dev/null || true
  fi
fi

# ---------------------------------------------------------------------------------------
# 4. Wait for the API
log_tail() {
  if [ -r "$LIBVIRT_LOG" ]; then
    echo "$PROG: last lines of $LIBVIRT_LOG:" >&2
    tail -n 20 "$LIBVIRT_LOG" >&2
  fi
}
deadline=$((SECONDS + WAIT_SECS))
until libvirt_answers; do
  if [ -n "$started_pid" ] && ! kill -0 "$started_pid" 2>/dev/null; then
    log_tail
    die "libvirtd exited right after it was started"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log_tail
    die "libvirt did not answer on $URI within ${WAIT_SECS}s"
  fi
  sleep 0.2
done
say "libvirt answers on $URI"

# ---------------------------------------------------------------------------------------
# 5. Domain type
hw_virt=no
grep -qE '^flags[[:space:]]*:.*\<(vmx|svm)\>' /proc/cpuinfo && hw_virt=yes

reason=""
if [ -n "${CIMID_DOMAIN_TYPE:-}" ]; then
  case "$CIMID_DOMAIN_TYPE" in
    kvm|qemu) domain_type=$CIMID_DOMAIN_TYPE; reason="set by CIMID_DOMAIN_TYPE" ;;
    *) die "CIMID_DOMAIN_TYPE must be kvm or qemu, not '$CIMID_DOMAIN_TYPE'" ;;
  esac
elif [ ! -c /dev/kvm ]; then
  domain_type=qemu; reason="there is no /dev/kvm"
elif [ "$hw_virt" = no ]; then
  domain_type=qemu; reason="the CPU has no vmx/svm, so /dev/kvm is not hardware-backed"
elif ! kvm_usable; then
  domain_type=qemu; reason="$QEMU_USER cannot open /dev/kvm"
elif ! virsh -q -c "$URI" domcapabilities --virttype kvm --arch x86_64 >/dev/null 2>&1; then
  domain_type=qemu; reason="libvirt reports no KVM support in QEMU"
else
  domain_type=kvm; reason="/dev/kvm is usable and the CPU has hardware virtualization"
fi

if [ "$domain_type" = kvm ]; then
  echo "$PROG: guests run under KVM (domain type kvm): $reason"
else
  echo "$PROG: guests run under TCG software emulation (domain type qemu): $reason"
fi

tmp_env=$(mktemp "$RUN_DIR/host.env.XXXXXX")
{
  echo "# Written by systemd/host-setup.sh; read by cimid and its tests."
  echo "CIMID_DOMAIN_TYPE=$domain_type"
} >"$tmp_env"
chmod 0644 "$tmp_env"
mv -f "$tmp_env" "$ENV_FILE"
say "wrote $ENV_FILE"

# ---------------------------------------------------------------------------------------
# 6. NAT for virtual networks
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
nat_problem=""
if ! have dnsmasq; then
  nat_problem="dnsmasq is not installed (package dnsmasq-base)"
elif ! have iptables && ! have nft; then
  nat_problem="neither iptables nor nft is installed"
elif [ "$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)" != 1 ] && [ ! -w /proc/sys/net/ipv4/ip_forward ]; then
  nat_problem="IP forwarding is off and cannot be turned on (/proc/sys/net/ipv4/ip_forward is read-only)"
fi
if [ -n "$nat_problem" ]; then
  echo "$PROG: NAT networks cannot work on this host: $nat_problem; cimid's default network will be isolated"
else
  say "NAT networks can work here (dnsmasq, iptables and IP forwarding are available)"
fi
