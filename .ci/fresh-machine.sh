# Sourced by .ci/run: make this host look like a fresh machine to sandbox, and put it back afterwards.
#
# HOST_STATE is everything sandbox, its demo and its tests leave on the host; ENGINE_STATE what
# the engines create there at their first run during the tests (podman's storage and run
# directories, the fixed paths containerd and dockerd make whatever their configuration).
# `fresh_clear` moves what exists aside into a stash (once; later calls only remove what the run
# made since), `fresh_restore` removes what the run made and moves the stash back, so a shared
# machine keeps its state and a CI machine ends as it began.  Engine state is left alone while an
# engine process runs or something is mounted below it: that is not a leftover.
# Run under `flock /tmp/sandbox-heavy.lock` where other work shares the machine.

HOST_STATE=(/var/log/sandbox /etc/sandbox /run/sandbox /run/sandbox-test /var/cache/sandbox)
ENGINE_STATE=(/var/lib/containers /run/containers /run/libpod /run/containerd /run/docker)
FRESH_STASH=  # this shell's own (never inherited: a nested use must not restore into the outer one's)
FRESH_TOUCHED=()  # each path once: restoring a path twice would remove what the first pass put back

_fresh_mounted_below() {
  awk -v p="$1" '{ if ($5 == p || index($5, p "/") == 1) found = 1 } END { exit !found }' /proc/self/mountinfo
}

_fresh_engine_busy() {
  pgrep -x podman >/dev/null || pgrep -x conmon >/dev/null || pgrep -x containerd >/dev/null \
    || pgrep -x dockerd >/dev/null
}

_fresh_remove() {  # PATH: remove what is there now (never across a mount)
  [ -e "$1" ] || [ -L "$1" ] || return 0
  if _fresh_mounted_below "$1"; then
    echo "fresh-machine: $1 has mounts below it; leaving it" >&2
    return 1
  fi
  rm -rf --one-file-system "$1"
}

_fresh_touched() {
  local t
  for t in "${FRESH_TOUCHED[@]}"; do [ "$t" = "$1" ] && return 0; done
  return 1
}

fresh_clear() {  # [--venv]: move the host state aside (first call) or remove what the run made (later)
  if [ -z "$FRESH_STASH" ]; then
    FRESH_STASH=$(mktemp -d /var/tmp/sandbox-fresh-stash.XXXXXX)
  fi
  local paths=("${HOST_STATE[@]}") p key
  if _fresh_engine_busy; then
    echo "fresh-machine: an engine process is running; its state (${ENGINE_STATE[*]}) stays" >&2
  else
    paths+=("${ENGINE_STATE[@]}")
  fi
  for p in "${paths[@]}"; do
    key=$FRESH_STASH/$(echo "$p" | tr / _)
    if _fresh_touched "$p"; then
      _fresh_remove "$p" || true  # made by this run since the first call
      continue
    fi
    if [ -e "$p" ] || [ -L "$p" ]; then
      _fresh_mounted_below "$p" && { echo "fresh-machine: $p has mounts below it; leaving it" >&2; continue; }
      mv "$p" "$key"  # the machine's own: back at the end
    fi
    FRESH_TOUCHED+=("$p")
  done
  if [ "${1:-}" = --venv ]; then
    rm -rf .venv .venv-latest
  fi
}

fresh_restore() {
  [ -n "$FRESH_STASH" ] || return 0
  local p key
  for p in "${FRESH_TOUCHED[@]}"; do
    _fresh_remove "$p" || continue
    key=$FRESH_STASH/$(echo "$p" | tr / _)
    if [ -e "$key" ]; then
      mkdir -p "$(dirname "$p")"
      mv "$key" "$p"
    fi
  done
  rmdir "$FRESH_STASH" 2>/dev/null || echo "fresh-machine: some state is left in $FRESH_STASH" >&2
}

fresh_expect() {  # PATH FORBIDDEN REQUIRED (octal mode bits): what sandbox made at first use is root's, safe
  local mode owner
  read -r mode owner < <(stat -c '%a %U' "$1") || { echo "fresh-machine: $1 was not created" >&2; return 1; }
  if [ "$owner" != root ] || (( 8#$mode & 8#$2 )) || (( (8#$mode & 8#$3) != 8#$3 )); then
    echo "fresh-machine: $1 is mode $mode owned by $owner; wanted root's, none of $2, all of $3" >&2
    return 1
  fi
}
