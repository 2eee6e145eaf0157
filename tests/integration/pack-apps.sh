#!/usr/bin/env bash
# Packs the apps the [app] integration tests run, with the real spore-pack,
# from each kind of source: the demo OCI layout, a docker-archive, a
# directory, and a registry started here on 127.0.0.1. Output: $1 (default
# out/test-apps), one app + .spore per name. Runs on the build host; the
# apps then run inside the testbed.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

dest=${1:-$SPORE_OUT/test-apps}
pack=$SPORE_OUT/bin/spore-pack
oci=$SPORE_OUT/demo/oci
[ -x "$pack" ] && [ -d "$oci" ] || spore_die "build first (scripts/build.sh)"
rm -rf "$dest" && mkdir -p "$dest"
work=$(mktemp -d)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

p() { "$pack" -q "$@"; }

# 1. The demo image, as an OCI layout.
p oci:"$oci" -o "$dest/demo"

# 2. Same layer, another config: env, workdir, user, entrypoint + cmd from
#    the image (docker semantics are checked against these).
cp -r "$oci" "$work/cfg"
manifest=$(sed -n 's/.*"digest":"sha256:\([0-9a-f]*\)".*/\1/p' "$oci/index.json")
layer=$(sed -n 's/.*"layers":\[{[^]]*"digest":"sha256:\([0-9a-f]*\)".*/\1/p' "$oci/blobs/sha256/$manifest")
layer_size=$(stat -c %s "$oci/blobs/sha256/$layer")
diff_id=$(gzip -dc "$oci/blobs/sha256/$layer" | sha256sum | cut -d' ' -f1)
cfg='{"architecture":"arm64","os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin","GREETING=from-image","OVERRIDE=image"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo default-cmd; id -u; pwd; echo $GREETING $OVERRIDE"],"WorkingDir":"/tmp","User":"nobody"},"rootfs":{"type":"layers","diff_ids":["sha256:'$diff_id'"]}}'
cfg_d=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
printf '%s' "$cfg" > "$work/cfg/blobs/sha256/$cfg_d"
man='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'$cfg_d'","size":'${#cfg}'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'$layer'","size":'$layer_size'}]}'
man_d=$(printf '%s' "$man" | sha256sum | cut -d' ' -f1)
printf '%s' "$man" > "$work/cfg/blobs/sha256/$man_d"
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'$man_d'","size":'${#man}',"annotations":{"org.opencontainers.image.ref.name":"cfg"}}]}' > "$work/cfg/index.json"
p oci:"$work/cfg:cfg" -o "$dest/cfgapp"

# 3. docker save format: manifest.json + config + an uncompressed layer tar.
mkdir -p "$work/da/$diff_id"
gzip -dc "$oci/blobs/sha256/$layer" > "$work/da/$diff_id/layer.tar"
demo_cfg=$(sed -n 's/.*"config":{[^}]*"digest":"sha256:\([0-9a-f]*\)".*/\1/p' "$oci/blobs/sha256/$manifest")
cp "$oci/blobs/sha256/$demo_cfg" "$work/da/$demo_cfg.json"
printf '%s' '[{"Config":"'$demo_cfg'.json","RepoTags":["demo:latest"],"Layers":["'$diff_id'/layer.tar"]}]' > "$work/da/manifest.json"
tar -C "$work/da" -cf "$work/demo.tar" .
p docker-archive:"$work/demo.tar" -o "$dest/dockerapp"

# 4. A plain directory, with a warm-up that leaves a mark in the spore and
#    options that replace the (absent) image config.
p dir:"$SPORE_OUT/demo/rootfs" -o "$dest/dirapp" --warm 'echo warmed > /tmp/warm-marker' \
  -e FROM_FLAG=yes -w /home --entrypoint /bin/sh

# 5. The demo again, packed under a name of its own (--name): its messages
#    use that name whatever the stub is called.
p oci:"$oci" -o "$dest/namedapp" --name my-tool

# 6. The demo tree plus a hostile guest program (tests/guest/attack.cc), for
#    the [attack] tests; unsealed, so its first run in a test is a cold boot.
attack_tree=$SPORE_OUT/test/attack-rootfs
[ -x "$attack_tree/usr/bin/spore-attack" ] || spore_die "$attack_tree is missing: run scripts/build.sh"
p dir:"$attack_tree" -o "$dest/attackapp" --no-seal

# 7. A registry on 127.0.0.1, pushed with skopeo.
port=$(( 20000 + RANDOM % 20000 ))
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$work/policy.json"
skopeo --policy "$work/policy.json" copy -q --dest-tls-verify=false oci:"$oci:latest" \
  "docker://127.0.0.1:$port/spore/demo:1.0"
p "127.0.0.1:$port/spore/demo:1.0" --insecure -o "$dest/regapp"

ls "$dest"
