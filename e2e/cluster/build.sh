#!/usr/bin/env bash
# Build (or reuse) the local cluster's executables in the cache directory:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (Go module k8s.io/kubernetes)
#   kwok and its stage files                                           (Go module sigs.k8s.io/kwok)
#   helm                                                               (Go module helm.sh/helm/v3)
#   etcd                                                               (crates.io etcd-bin-vendored)
# Each component lives under $SILO_CACHE/<component>/<version>/ and is rebuilt only when its
# directory lacks the ".complete" marker. Usage: build.sh [COMPONENT...]  (etcd kubernetes kwok helm; default all)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GO_BUILD_FLAGS=(-trimpath)

# Release go.mod of k8s.io/kubernetes from the module proxy (path in the module cache).
kubernetes_release_gomod() {
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}

build_kubernetes() {
    if [[ -f "$K8S_DIR/.complete" ]]; then return 0; fi
    local start src gomod staging_version major minor buildflags
    start="$(now_s)"
    log "building Kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl); cold build takes a while"
    src="$K8S_DIR/src"
    go_workdir "$src" kubernetes
    gomod="$(kubernetes_release_gomod)"
    [[ -f "$gomod" ]] || die "kubernetes: could not download k8s.io/kubernetes@$KUBERNETES_VERSION (go mod download)"
    # Staging modules are required at v0.0.0 and replaced by ./staging/... upstream; replace
    # directives of a dependency are ignored, so map each one to its published v0.X.Y tag.
    staging_version="v0.${KUBERNETES_VERSION#v1.}"
    local go_line godebug_line
    go_line="$(grep -m1 '^go ' "$gomod")"
    godebug_line="$(grep -m1 '^godebug ' "$gomod" || true)"
    {
        echo
        echo "$go_line"
        [[ -n "$godebug_line" ]] && echo "$godebug_line"
        echo
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo
        echo "replace ("
        sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*$#\t\1 => \1 '"$staging_version"'#p' "$gomod"
        echo ")"
    } >>"$src/go.mod"
    local n
    n="$(grep -c "=> k8s.io/.* $staging_version" "$src/go.mod")"
    [[ "$n" -gt 0 ]] || die "kubernetes: no staging replace lines found in $gomod"
    log "kubernetes: $n staging modules mapped to $staging_version"
    local pkgs=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl)
    pkgs=("${pkgs[@]/#/k8s.io/kubernetes/}")
    quiet "$K8S_DIR/go-get.log" go -C "$src" get "${pkgs[@]/%/@$KUBERNETES_VERSION}" ||
        die "kubernetes: resolving modules for k8s.io/kubernetes@$KUBERNETES_VERSION failed, see $K8S_DIR/go-get.log"
    major="${KUBERNETES_VERSION#v}"
    major="${major%%.*}"
    minor="${KUBERNETES_VERSION#v*.}"
    minor="${minor%%.*}"
    buildflags="-s -w"
    local key val pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        for key in gitVersion:"$KUBERNETES_VERSION" gitMajor:"$major" gitMinor:"$minor" gitTreeState:clean \
            buildDate:"$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
            val="${key#*:}"
            buildflags+=" -X $pkg.${key%%:*}=$val"
        done
    done
    rm -rf "${K8S_DIR:?}/bin"
    mkdir -p "$K8S_DIR/bin"
    (cd "$src" && go build "${GO_BUILD_FLAGS[@]}" -ldflags="$buildflags" -o "$K8S_DIR/bin/" "${pkgs[@]}") ||
        die "kubernetes: go build of ${pkgs[*]} failed (see above)"
    touch "$K8S_DIR/.complete"
    log "kubernetes: built in $(elapsed "$start")s"
}

# go_tool_build COMPONENT DIR MODULE VERSION PKG LDFLAGS: build one main package of MODULE@VERSION
# into DIR/bin through a generated go.mod in DIR/src.
go_tool_build() {
    local component="$1" dir="$2" module="$3" version="$4" pkg="$5" ldflags="$6"
    go_workdir "$dir/src" "$component"
    quiet "$dir/go-get.log" go -C "$dir/src" get "$pkg@$version" ||
        die "$component: resolving $module@$version failed, see $dir/go-get.log"
    rm -rf "${dir:?}/bin"
    mkdir -p "$dir/bin"
    (cd "$dir/src" && go build "${GO_BUILD_FLAGS[@]}" -ldflags="$ldflags" -o "$dir/bin/" "$pkg") ||
        die "$component: go build of $pkg@$version failed (see above)"
}

# Stage documents kwok needs to move fake nodes and pods through their lifecycle; recent kwok
# releases ship them in the module instead of compiling them in.
KWOK_STAGES=(
    node/fast/node-initialize.yaml
    node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    pod/fast/pod-ready.yaml
    pod/fast/pod-complete.yaml
    pod/fast/pod-delete.yaml
)

build_kwok() {
    if [[ -f "$KWOK_DIR/.complete" ]]; then return 0; fi
    local start moddir stage
    start="$(now_s)"
    log "building kwok $KWOK_VERSION"
    go_tool_build kwok "$KWOK_DIR" sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
        "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
    moddir="$(cd "$KWOK_DIR/src" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
    [[ -d "$moddir/kustomize/stage" ]] || die "kwok: stage directory missing in module $moddir"
    # One multi-document config file with every stage, passed to kwok --config.
    : >"$KWOK_DIR/stages.yaml"
    for stage in "${KWOK_STAGES[@]}"; do
        [[ -f "$moddir/kustomize/stage/$stage" ]] || die "kwok: stage $stage missing in $moddir"
        { echo "---"; cat "$moddir/kustomize/stage/$stage"; } >>"$KWOK_DIR/stages.yaml"
    done
    touch "$KWOK_DIR/.complete"
    log "kwok: built in $(elapsed "$start")s"
}

build_helm() {
    if [[ -f "$HELM_DIR/.complete" ]]; then return 0; fi
    local start major minor v
    start="$(now_s)"
    log "building helm $HELM_VERSION"
    major="${KUBERNETES_VERSION#v}"
    major="${major%%.*}"
    minor="${KUBERNETES_VERSION#v*.}"
    minor="${minor%%.*}"
    v="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    v+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    v+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
    v+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
    v+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
    v+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    go_tool_build helm "$HELM_DIR" helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$v"
    touch "$HELM_DIR/.complete"
    log "helm: built in $(elapsed "$start")s"
}

# etcd comes prebuilt inside the crates.io crate etcd-bin-vendored (a per-platform dependency
# crate holds the executable). A throwaway cargo project prints the path the crate exposes.
build_etcd() {
    if [[ -f "$ETCD_DIR/.complete" ]]; then return 0; fi
    require_tool cargo "install the Rust toolchain (rustup)"
    local start feature src path
    start="$(now_s)"
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) feature=linux-x86_64 ;;
        Linux-aarch64) feature=linux-aarch64 ;;
        Darwin-arm64) feature=macos-aarch64 ;;
        Darwin-x86_64) feature=macos-x86_64 ;;
        *) die "etcd: no etcd-bin-vendored build for $(uname -s)-$(uname -m)" ;;
    esac
    log "fetching etcd $ETCD_CRATE_VERSION (crate etcd-bin-vendored, feature $feature)"
    src="$ETCD_DIR/src"
    rm -rf "$src"
    mkdir -p "$src/src"
    printf '%s\n' '[package]' 'name = "etcd-locate"' 'version = "0.0.0"' 'edition = "2021"' \
        'publish = false' '' '[dependencies]' \
        "etcd-bin-vendored = { version = \"=$ETCD_CRATE_VERSION\", features = [\"$feature\"] }" \
        '' '[workspace]' >"$src/Cargo.toml"
    printf '%s\n' 'fn main() {' '    match etcd_bin_vendored::etcd_bin_path() {' \
        '        Ok(path) => println!("{}", path.display()),' \
        '        Err(err) => {' '            eprintln!("{err:?}");' '            std::process::exit(1);' \
        '        }' '    }' '}' >"$src/src/main.rs"
    path="$(cd "$src" && CARGO_TARGET_DIR="$src/target" cargo run --quiet)" ||
        die "etcd: cargo could not build the etcd-bin-vendored@$ETCD_CRATE_VERSION locator (see above)"
    [[ -x "$path" ]] || die "etcd: crate reported '$path', which is not an executable"
    rm -rf "${ETCD_DIR:?}/bin"
    mkdir -p "$ETCD_DIR/bin"
    cp "$path" "$ETCD_DIR/bin/etcd"
    "$ETCD_DIR/bin/etcd" --version >/dev/null || die "etcd: $ETCD_DIR/bin/etcd does not run"
    rm -rf "$src/target"
    touch "$ETCD_DIR/.complete"
    log "etcd: ready in $(elapsed "$start")s"
}

main() {
    require_tool go "install the Go toolchain (1.26 or newer)"
    mkdir -p "$SILO_CACHE"
    # One build at a time per cache directory (two clusters may start at once).
    require_tool flock "install util-linux"
    exec 7>"$SILO_CACHE/.build.lock"
    flock 7
    local what=("$@")
    [[ ${#what[@]} -gt 0 ]] || what=(etcd kubernetes kwok helm)
    local c
    for c in "${what[@]}"; do
        "build_$c"
    done
}

main "$@"
