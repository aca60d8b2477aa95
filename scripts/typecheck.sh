#!/usr/bin/env bash
# mypy on the package `codirector`, whatever this checkout's folder is called (what .ci/run and the README run).
#
# The repository root IS the package, but mypy names a module after the folders it sits in and cannot see
# through the editable install's import hook: `mypy .` in a clone folder named `main` checks `main.cli`,
# `main.engine...`, and finds no `codirector.*` to import (in a folder named `codirector-main` it refuses to
# start). So mypy runs in a scratch folder holding one link, `codirector`, to this root, and checks the package
# by name. The settings ([tool.mypy], strict) and the cache stay with the repository. Extra arguments go to mypy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -f "$scratch/codirector"; rmdir "$scratch"' EXIT
ln -s "$root" "$scratch/codirector"
cd "$scratch"
mypy --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" "$@" -p codirector
