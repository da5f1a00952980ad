#!/usr/bin/env bash
# launch.sh: run jaxdiff on Cloud TPU VMs (a single host such as v4-8, or a pod slice) with gcloud.
#
#   ./launch.sh create                      # make the TPU VM (every worker of the slice)
#   ./launch.sh setup                       # copy this checkout to every worker, pip install -e '.[tpu]'
#   ./launch.sh train [--config.x.y=V ...]  # python -m jaxdiff.train on --worker=all, in the background
#   ./launch.sh status                      # the VM's state and the last lines of every worker's log
#   ./launch.sh sample --word nurse [...]   # python -m jaxdiff.sample on worker 0
#   ./launch.sh ssh [COMMAND]               # a shell (or one command) on worker ${WORKER:-0}
#   ./launch.sh delete                      # delete the TPU VM
#
# Settings (environment variables, defaults in brackets):
#   TPU_NAME [jaxdiff]  ZONE [us-central2-b]  ACCELERATOR_TYPE [v4-8]
#   RUNTIME_VERSION [tpu-ubuntu2204-base]  PROJECT [gcloud's default project]
#   CONFIG [configs/base_tpu.py]  WORKDIR [runs/base_tpu; a gs://bucket/path keeps checkpoints off the VM]
#   REMOTE_DIR [jaxdiff, relative to the workers' home]  REPO_URL [unset: copy this checkout with scp;
#   set: git clone it on every worker]  SPOT [unset; 1 = spot VM, which may be preempted]
#   DRY_RUN [unset; 1 = print every gcloud command instead of running it]
#
# A preempted spot VM sends SIGTERM: the trainer saves a checkpoint and exits; once the VM is back
# (./launch.sh create, setup), rerunning the same ./launch.sh train resumes from that checkpoint.
# The data directory may be a gs:// path (tf.data reads it): --config.data.dir=gs://bucket/sd21.
set -euo pipefail

TPU_NAME="${TPU_NAME:-jaxdiff}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
PROJECT="${PROJECT:-}"
CONFIG="${CONFIG:-configs/base_tpu.py}"
WORKDIR="${WORKDIR:-runs/base_tpu}"
REMOTE_DIR="${REMOTE_DIR:-jaxdiff}"
REPO_URL="${REPO_URL:-}"
SPOT="${SPOT:-}"
DRY_RUN="${DRY_RUN:-}"
LOG_PREFIX="jaxdiff-train"

usage() {
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# One argument as the shell would need it typed: bare if plain, else in single quotes.
shell_quote() {
  local s="$1"
  if [[ "$s" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# Runs a command, or prints it (one line, copy-pasteable) when DRY_RUN=1.
run() {
  if [[ -n "$DRY_RUN" ]]; then
    local out=() arg
    for arg in "$@"; do out+=("$(shell_quote "$arg")"); done
    printf '%s\n' "${out[*]}"
  else
    "$@"
  fi
}

# Where the TPU VM lives: every gcloud command takes these.
GCLOUD_FLAGS=(--zone="$ZONE")
if [[ -n "$PROJECT" ]]; then GCLOUD_FLAGS+=(--project="$PROJECT"); fi

# gcloud compute tpus tpu-vm ssh on the given worker(s) with one remote command.
on_workers() {
  local worker="$1" command="$2"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --worker="$worker" --command="$command"
}

# Shell-quotes the pass-through arguments for the remote command line.
quoted_args() {
  if (($# == 0)); then return; fi
  printf ' %q' "$@"
}

cmd_create() {
  local extra=()
  if [[ -n "$SPOT" ]]; then extra+=(--spot); fi
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION" "${extra[@]}"
}

cmd_setup() {
  local install="cd ~/$REMOTE_DIR && python3 -m pip install -q -U pip && python3 -m pip install -q -e '.[tpu]'"
  if [[ -n "$REPO_URL" ]]; then
    on_workers all "(test -d ~/$REMOTE_DIR/.git && git -C ~/$REMOTE_DIR pull --ff-only) || git clone $(printf '%q' "$REPO_URL") ~/$REMOTE_DIR; $install"
  else
    local archive
    archive="$(mktemp -d)/jaxdiff.tar.gz"
    run git -C "$(dirname "$0")" archive --format=tar.gz -o "$archive" HEAD
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:~/jaxdiff.tar.gz" "${GCLOUD_FLAGS[@]}" --worker=all
    on_workers all "mkdir -p ~/$REMOTE_DIR && tar -xzf ~/jaxdiff.tar.gz -C ~/$REMOTE_DIR && $install"
  fi
}

cmd_train() {
  # nohup + background + a log per worker: an ssh drop does not stop training. --distributed makes
  # every worker call jax.distributed.initialize(), which finds the slice's hosts itself.
  local train
  train="python3 -m jaxdiff.train --config=$CONFIG --workdir=$WORKDIR --distributed$(quoted_args "$@")"
  on_workers all "cd ~/$REMOTE_DIR && nohup $train > ~/$LOG_PREFIX-\$(hostname).log 2>&1 < /dev/null &"
}

cmd_sample() {
  on_workers 0 "cd ~/$REMOTE_DIR && python3 -m jaxdiff.sample --workdir=$WORKDIR$(quoted_args "$@")"
}

cmd_status() {
  run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --format="value(state,acceleratorType)"
  on_workers all "tail -n 3 ~/$LOG_PREFIX-*.log 2>/dev/null | tr '\r' '\n' | tail -n 3 || echo 'no training log yet'"
}

cmd_ssh() {
  if (($# > 0)); then
    on_workers "${WORKER:-0}" "$*"
  else
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --worker="${WORKER:-0}"
  fi
}

cmd_delete() {
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --quiet
}

main() {
  (($# >= 1)) || usage
  local subcommand="$1"
  shift
  case "$subcommand" in
    create) cmd_create "$@" ;;
    setup) cmd_setup "$@" ;;
    train) cmd_train "$@" ;;
    sample) cmd_sample "$@" ;;
    status) cmd_status "$@" ;;
    ssh) cmd_ssh "$@" ;;
    delete) cmd_delete "$@" ;;
    -h | --help | help) usage ;;
    *)
      echo "error: unknown subcommand '$subcommand'; use one of: create setup train sample status ssh delete" >&2
      exit 2
      ;;
  esac
}

main "$@"
