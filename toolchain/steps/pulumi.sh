# shellcheck shell=bash
# Pulumi engine and plugins, built from Go modules fetched through the Go module proxy.
# Sourced by toolchain/build; every step builds into $TC_BIN and uses $TC_WORK (outside the repo) for
# sources that are copied or generated at build time. The runner runs each step in a fresh
# `bash -euo pipefail`; commands that can fail also end in `|| return` so a step stays correct when
# sourced anywhere errexit is off.
# Versions: toolchain/pins.env ("Pulumi engine and plugins"); module versions: toolchain/go/pulumi*/go.mod.
# What is built from what, and why, is in toolchain/README.md.

# _pulumi_modver DIR MODULE: the version of MODULE selected by the wrapper module in DIR.
_pulumi_modver() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

# _pulumi_moddir DIR MODULE: the module cache directory of MODULE as selected by the wrapper in DIR.
_pulumi_moddir() { (cd "$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2"); }

# _pulumi_expect WHAT GOT WANT: fail when a wrapper go.mod disagrees with pins.env.
_pulumi_expect() {
  if [[ "$2" != "$3" ]]; then
    echo "pin mismatch for $1: wrapper module selects '$2' but toolchain/pins.env wants '$3'" >&2
    return 1
  fi
}

# _pulumi_provider_src WRAPPER MODULE CMDPKG NAME: copy the provider's cmd package into
# $TC_WORK/NAME (a copy of the wrapper module, so go.mod/go.sum pin every dependency) and print the
# directory of the copied cmd package. Module zips are read-only and lack the go:embed'ed files.
_pulumi_provider_src() {
  local wrapper="$1" module="$2" cmdpkg="$3" name="$4" src work
  src="$(_pulumi_moddir "$wrapper" "$module")" || return
  work="$TC_WORK/$name"
  rm -rf "$work" && mkdir -p "$work/cmd" || return
  cp "$wrapper/go.mod" "$wrapper/go.sum" "$work/" || return
  cp -r "$src/$cmdpkg" "$work/cmd/$name" && chmod -R u+w "$work" || return
  echo "$work/cmd/$name"
}

pulumi_cli() {
  local mod="$here/go/pulumi"
  _pulumi_expect "github.com/pulumi/pulumi/pkg/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/pkg/v3)" "v$PULUMI_VERSION" || return
  _pulumi_expect "github.com/pulumi/pulumi/sdk/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/sdk/v3)" "v$PULUMI_VERSION" || return
  (cd "$mod" && go build -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$TC_BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) || return
  _pulumi_expect "pulumi version" "$("$TC_BIN/pulumi" version)" "v$PULUMI_VERSION"
}

pulumi_language_python() {
  local mod="$here/go/pulumi/language-python" sdk
  # The language host's own module (sdk/python/cmd/pulumi-language-python/v3) is not served by the
  # proxy; the newest served sdk/v3 that still contains the host as a package is built instead, as
  # pulumi-language-python-host, and started by the launcher in the wrapper module (main.go), which
  # is what the CLI finds as pulumi-language-python.
  _pulumi_expect "language host sdk/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/sdk/v3)" "v$PULUMI_LANGUAGE_PYTHON_VERSION" || return
  (cd "$mod" && go build \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_LANGUAGE_PYTHON_VERSION" \
    -o "$TC_BIN/pulumi-language-python-host" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python) || return
  (cd "$mod" && go build -ldflags "-s -w" -o "$TC_BIN/pulumi-language-python" .) || return
  # The host runs the program through the pulumi-language-python-exec script found next to its own
  # executable. It is the Python side of the protocol, so it comes from the sdk/v3 module of the CLI
  # version (it accepts every argument the older host passes).
  sdk="$(_pulumi_moddir "$here/go/pulumi" github.com/pulumi/pulumi/sdk/v3)" || return
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$TC_BIN/pulumi-language-python-exec" || return
  if [[ -f "$sdk/python/dist/pulumi-resource-pulumi-python" ]]; then
    install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$TC_BIN/pulumi-resource-pulumi-python" || return
  fi
  ls -l "$TC_BIN"/pulumi-language-python* "$TC_BIN"/pulumi-resource-pulumi-python 2>/dev/null || true
}

# _pulumi_language_proxy LANGUAGE HOST_VERSION: install pulumi-language-proxy (wrapper go/pulumi/language-proxy)
# as $TC_BIN/pulumi-language-LANGUAGE, in front of the host the calling step installed next to it as
# pulumi-language-LANGUAGE-host, and run its self-check (check/): the host behind it reports HOST_VERSION,
# what the proxy adds for LANGUAGE works, and the host ends with the proxy.
_pulumi_language_proxy() {
  local lang="$1" host_version="$2" mod="$here/go/pulumi/language-proxy" work="$TC_WORK/pulumi-language-proxy"
  # The proxy answers the calls the older hosts lack with the CLI's own pkg/v3 and sdk/v3.
  _pulumi_expect "language proxy pkg/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/pkg/v3)" "v$PULUMI_VERSION" || return
  _pulumi_expect "language proxy sdk/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/sdk/v3)" "v$PULUMI_VERSION" || return
  (cd "$mod" && go build -ldflags "-s -w" -o "$TC_BIN/pulumi-language-$lang" .) || return
  mkdir -p "$work" && (cd "$mod" && go build -o "$work/check" ./check) || return
  "$work/check" "$lang" "$TC_BIN/pulumi-language-$lang" "$host_version" || return
  ls -l "$TC_BIN"/pulumi-language-"$lang"*
}

pulumi_language_nodejs() {
  local mod="$here/go/pulumi/language-nodejs"
  # As for Python: the host's own module (sdk/nodejs/cmd/pulumi-language-nodejs/v3) is not served, so
  # the host package of the newest served sdk/v3 that still contains it is built, as
  # pulumi-language-nodejs-host. In front of it, as pulumi-language-nodejs, the language proxy passes the
  # host the project's runtime options and answers GeneratePackage and Link, which the host predates
  # (`pulumi package add`). The Node.js side (`@pulumi/pulumi`, its `cmd/run`) comes from the program's
  # node_modules, as always.
  _pulumi_expect "language host sdk/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/sdk/v3)" "v$PULUMI_LANGUAGE_NODEJS_VERSION" || return
  (cd "$mod" && go build \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_LANGUAGE_NODEJS_VERSION" \
    -o "$TC_BIN/pulumi-language-nodejs-host" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs) || return
  _pulumi_language_proxy nodejs "$PULUMI_LANGUAGE_NODEJS_VERSION"
}

pulumi_language_yaml() {
  local mod="$here/go/pulumi/language-yaml"
  # pulumi-yaml does not compile against the CLI's pkg/v3; its wrapper pins pkg/v3 and sdk/v3 of its own.
  # It is installed as pulumi-language-yaml-host, behind the language proxy, which answers Link (the
  # host predates it; `pulumi package add`).
  _pulumi_expect "github.com/pulumi/pulumi-yaml" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi-yaml)" "v$PULUMI_LANGUAGE_YAML_VERSION" || return
  _pulumi_expect "YAML host pkg/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/pkg/v3)" "v$PULUMI_LANGUAGE_YAML_SDK_VERSION" || return
  _pulumi_expect "YAML host sdk/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/sdk/v3)" "v$PULUMI_LANGUAGE_YAML_SDK_VERSION" || return
  (cd "$mod" && go build \
    -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=v$PULUMI_LANGUAGE_YAML_VERSION" \
    -o "$TC_BIN/pulumi-language-yaml-host" github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml) || return
  _pulumi_language_proxy yaml "$PULUMI_LANGUAGE_YAML_VERSION"
}

pulumi_sdkgen_nodejs() {
  local mod="$here/go/pulumi/sdkgen-nodejs" work="$TC_WORK/pulumi-sdkgen-nodejs"
  # The CLI hands SDK generation (`pulumi package gen-sdk`, `pulumi package add`) to the language host's
  # GeneratePackage, which the v3.68.0 Node.js host lacks; the language proxy in front of it answers with
  # the CLI's own generator (pkg/v3 codegen/nodejs). main.go of this wrapper calls the same generator on a
  # schema file, without the CLI, so pkg/v3 and sdk/v3 are the CLI's version.
  _pulumi_expect "sdkgen pkg/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/pkg/v3)" "v$PULUMI_VERSION" || return
  _pulumi_expect "sdkgen sdk/v3" "$(_pulumi_modver "$mod" github.com/pulumi/pulumi/sdk/v3)" "v$PULUMI_VERSION" || return
  (cd "$mod" && go build -ldflags "-s -w" -o "$TC_BIN/pulumi-sdkgen-nodejs" .) || return
  # Check: generate the SDK of a one-component schema and look for its files.
  rm -rf "$work" && mkdir -p "$work" || return
  cat >"$work/schema.json" <<'JSON' || return
{"name": "sdkgencheck", "version": "1.2.3",
 "language": {"nodejs": {"respectSchemaVersion": true}},
 "resources": {"sdkgencheck:index:Widget": {"isComponent": true,
   "inputProperties": {"size": {"type": "integer"}}, "requiredInputs": ["size"],
   "properties": {"label": {"type": "string"}}, "required": ["label"]}}}
JSON
  "$TC_BIN/pulumi-sdkgen-nodejs" "$work/schema.json" "$work/sdk" || return
  ls -l "$work/sdk"
  if ! grep -q 'export class Widget extends pulumi.ComponentResource' "$work/sdk/widget.ts" \
    || ! grep -q '"version": "1.2.3"' "$work/sdk/package.json"; then
    echo "pulumi-sdkgen-nodejs wrote an unexpected SDK into $work/sdk" >&2
    return 1
  fi
}

pulumi_resource_kubernetes() {
  local mod="$here/go/pulumi-kubernetes" module=github.com/pulumi/pulumi-kubernetes/provider/v4 cmd
  _pulumi_expect "$module" "$(_pulumi_modver "$mod" "$module")" "$PULUMI_KUBERNETES_MODULE_VERSION" || return
  cmd="$(_pulumi_provider_src "$mod" "$module" cmd/pulumi-resource-kubernetes pulumi-resource-kubernetes)" || return
  # Upstream's `go generate` step (generate.go in the same package, build tag `ignore`): writes
  # schema-embed.json (schema.json minified, version set) and terraform-mapping-embed.json.
  (cd "$cmd" && VERSION="$PULUMI_KUBERNETES_VERSION" go run ./generate.go) || return
  ls -l "$cmd"
  (cd "$cmd" && go build \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" \
    -o "$TC_BIN/pulumi-resource-kubernetes" .) || return
}

# _pulumi_bridged NAME VERSION: a Terraform provider bridged to Pulumi (wrapper toolchain/go/pulumi-NAME).
# As upstream's `make provider`: build the tfgen program, run it to write schema.json and
# bridge-metadata.json, write schema-embed.json (schema.json minified, version set), then build the
# provider, which go:embeds both. All of it happens in a copy of the wrapper under $TC_WORK.
_pulumi_bridged() {
  local name="$1" version="$2" mod="$here/go/pulumi-$1" work cmd ldflags
  ldflags="-s -w -X istio-mesh.local/toolchain/pulumi-$name.Version=$version"
  # tfgen reads the upstream docs from the module cache through `go mod download -json`, which it
  # runs in the working directory only when that is named "provider" (upstream's layout).
  work="$TC_WORK/pulumi-$name/provider"
  rm -rf "$TC_WORK/pulumi-$name" && mkdir -p "$work" && cp -r "$mod/." "$work/" || return
  cmd="$work/cmd/pulumi-resource-$name"
  (cd "$work" && go build -ldflags "$ldflags" -o "$work/bin/pulumi-tfgen-$name" "./cmd/pulumi-tfgen-$name") || return
  # --skip-examples: converting the HCL examples in the docs needs `pulumi convert` and a converter
  # plugin download; examples only feed the schema's descriptions.
  (cd "$work" && "$work/bin/pulumi-tfgen-$name" schema --skip-examples --out "$cmd") || return
  python3 - "$cmd" "$version" <<'PY' || return
import json, sys
cmd, version = sys.argv[1], sys.argv[2]
with open(f"{cmd}/schema.json") as f:
    spec = json.load(f)
spec["version"] = version
with open(f"{cmd}/schema-embed.json", "w") as f:
    json.dump(spec, f, separators=(",", ":"), ensure_ascii=False)
PY
  [[ -s "$cmd/schema-embed.json" && -f "$cmd/bridge-metadata.json" ]] || return
  ls -l "$cmd"
  (cd "$work" && go build -ldflags "$ldflags" -o "$TC_BIN/pulumi-resource-$name" "./cmd/pulumi-resource-$name") || return
}

pulumi_resource_tls() { _pulumi_bridged tls "$PULUMI_TLS_VERSION"; }
pulumi_resource_random() { _pulumi_bridged random "$PULUMI_RANDOM_VERSION"; }

register pulumi-cli pulumi_cli
register pulumi-language-python pulumi_language_python
register pulumi-language-nodejs pulumi_language_nodejs
register pulumi-language-yaml pulumi_language_yaml
register pulumi-sdkgen-nodejs pulumi_sdkgen_nodejs
register pulumi-resource-tls pulumi_resource_tls
register pulumi-resource-random pulumi_resource_random
register pulumi-resource-kubernetes pulumi_resource_kubernetes
