#!/usr/bin/env bash
# Builds the embedded demo image as an OCI image layout at out/demo/oci,
# from the demo root tree (scripts/build-demo-rootfs.sh): one gzip layer, a
# config with a default command, tag "latest". Deterministic bytes: sorted
# tar with fixed owners and times, gzip without a name or time stamp.
#
#   spore-pack oci:out/demo/oci -o ./demo
set -euo pipefail
. "$(dirname "$0")/lib.sh"

tree=$SPORE_OUT/demo/rootfs
oci=$SPORE_OUT/demo/oci
[ -d "$tree" ] || spore_die "no demo root tree at $tree (run scripts/build-demo-rootfs.sh)"
key=$( (find "$tree" -printf '%P %y %m %s %l\n' | sort; cat "$0") | spore_hash)
[ "$(cat "$oci/.key" 2>/dev/null)" = "$key" ] && exit 0

tmp=$oci.tmp.$$
rm -rf "$tmp" && mkdir -p "$tmp/blobs/sha256"
trap 'rm -rf "$tmp"' EXIT

# The layer: a tar of the tree, then its gzip; the config names the tar's
# digest (diff_id), the manifest the gzip's.
tar -C "$tree" --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$tmp/layer.tar" .
diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
gzip -n -9 < "$tmp/layer.tar" > "$tmp/layer.tar.gz"
layer=$(sha256sum "$tmp/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$tmp/layer.tar.gz")
mv "$tmp/layer.tar.gz" "$tmp/blobs/sha256/$layer"
rm "$tmp/layer.tar"

blob() {  # stores $1 as a blob; prints "digest size"
  local d
  d=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)
  printf '%s' "$1" > "$tmp/blobs/sha256/$d"
  echo "$d $(stat -c %s "$tmp/blobs/sha256/$d")"
}

greeting='echo "hello from a spore app: $(uname -sm), $(nproc) vCPU, $(sed -n "s/PRETTY_NAME=//p" /etc/os-release)"'
cmd_json=$(printf '%s' "$greeting" | sed 's/\\/\\\\/g; s/"/\\"/g')
read -r config config_size < <(blob "{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"/bin/sh\",\"-c\",\"$cmd_json\"],\"WorkingDir\":\"/\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\"history\":[{\"created_by\":\"spore scripts/build-demo-image.sh\"}]}")
read -r manifest manifest_size < <(blob "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$config_size},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer\",\"size\":$layer_size}]}")
printf '%s\n' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\"size\":$manifest_size,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"},\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}}]}" > "$tmp/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$tmp/oci-layout"
echo "$key" > "$tmp/.key"
trap - EXIT
rm -rf "$oci" && mv "$tmp" "$oci"
spore_log "demo image: $oci (layer $(( layer_size / 1024 )) KiB)"
