# shellcheck shell=bash
# Step: Istio's Helm charts (base, istiod, gateway) taken from the Go module istio.io/istio at
# ISTIO_MODULE_VERSION (pins.env), checked against toolchain/go/istio/go.sum, and stamped the way
# Istio's release builder stamps them: Chart.yaml version/appVersion = ISTIO_VERSION and the default
# images docker.io/istio/*:ISTIO_VERSION instead of the repository's placeholders (version 1.0.0,
# hub registry.istio.io/testing, tag latest).
#
# Output: $TC_CHARTS/base, $TC_CHARTS/istiod (manifests/charts/istio-control/istio-discovery),
# $TC_CHARTS/gateway (manifests/charts/gateway). The gateway chart has no image defaults of its own:
# its Deployment says `image: auto`, which istiod's injector fills from istiod's global.hub/global.tag.

ISTIO_DEFAULT_HUB="docker.io/istio"

# _replace_once FILE OLD NEW: replace the single line equal to OLD by NEW; fail if OLD is not there
# exactly once (so an upstream change of the placeholders is noticed, not silently ignored).
_replace_once() {
  local file="$1" old="$2" new="$3" n
  n="$(grep -cxF -- "$old" "$file" || true)"
  if [[ "$n" != 1 ]]; then
    echo "$file: expected exactly one line '$old', found $n" >&2
    return 1
  fi
  OLD="$old" NEW="$new" awk '$0 == ENVIRON["OLD"] { print ENVIRON["NEW"]; next } { print }' "$file" >"$file.tmp"
  mv -f "$file.tmp" "$file"
}

step_istio_charts() {
  local mod="$here/go/istio" src dst name
  if ! grep -qE "^require istio\.io/istio ${ISTIO_MODULE_VERSION//./\\.}\$" "$mod/go.mod"; then
    echo "toolchain/go/istio/go.mod does not require istio.io/istio $ISTIO_MODULE_VERSION (pins.env)." >&2
    echo "Run toolchain/go/istio/sync.sh and commit go.mod/go.sum." >&2
    return 1
  fi
  src="$(cd "$mod" && GOFLAGS=-mod=readonly go mod download -json istio.io/istio \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src/manifests/charts" ]] || { echo "no manifests/charts in istio.io/istio ($src)" >&2; return 1; }
  echo "istio.io/istio $ISTIO_MODULE_VERSION at $src (VERSION file: $(cat "$src/VERSION"))"

  for pair in base:base istiod:istio-control/istio-discovery gateway:gateway; do
    name="${pair%%:*}"; dst="$TC_CHARTS/$name"
    rm -rf "$dst"
    cp -R "$src/manifests/charts/${pair#*:}" "$dst"
    chmod -R u+w "$dst"   # the module cache is read-only
    _replace_once "$dst/Chart.yaml" "version: 1.0.0" "version: $ISTIO_VERSION"
    _replace_once "$dst/Chart.yaml" "appVersion: 1.0.0" "appVersion: $ISTIO_VERSION"
  done
  # istiod: _internal_defaults_do_not_set.global.hub / .global.tag (what every Istio image uses).
  _replace_once "$TC_CHARTS/istiod/values.yaml" "    hub: registry.istio.io/testing" "    hub: $ISTIO_DEFAULT_HUB"
  _replace_once "$TC_CHARTS/istiod/values.yaml" "    tag: latest" "    tag: \"$ISTIO_VERSION\""

  # Nothing may still point at the test registry or carry the placeholder version.
  if grep -rnE '^\s*(hub|image): .*registry\.istio\.io/testing|^(version|appVersion): 1\.0\.0$' \
    "$TC_CHARTS"/{base,istiod,gateway}/{Chart.yaml,values.yaml}; then
    echo "placeholder values remain (above)" >&2
    return 1
  fi
  for name in base istiod gateway; do
    printf '%s: ' "$name"; grep -E '^(name|version|appVersion):' "$TC_CHARTS/$name/Chart.yaml" | tr '\n' ' '; echo
  done
  grep -nE '^    (hub|tag):' "$TC_CHARTS/istiod/values.yaml"
}

register istio-charts step_istio_charts
