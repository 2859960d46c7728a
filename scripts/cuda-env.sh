# shellcheck shell=bash
# Sourced by scripts/cuda-check.sh and scripts/gpu-check.sh: finds or installs a CUDA 13.0
# toolkit and exports what candle's build scripts need. Not meant to be run on its own.
#
# Where the toolkit comes from (TARJUMA_CUDA_TOOLKIT=auto|system|wheels, default auto):
#   system  $CUDA_HOME (or $CUDA_PATH) if it holds bin/nvcc, else `nvcc` on PATH, else
#           /usr/local/cuda/bin/nvcc.
#   wheels  NVIDIA's CUDA 13.0 pip wheels (nvcc, nvvm, crt, cudart, cccl; plus cuBLAS,
#           cuRAND and NVRTC when linking), installed once with `python3 -m pip install
#           --target` into $TARJUMA_CACHE/cuda-toolkit/ (default ~/.cache/tarjuma). The
#           wheels all unpack into one tree, nvidia/cu13/{bin,include,lib,nvvm}; a few
#           links make it the layout nvcc and cudarc expect (lib64, targets/x86_64-linux,
#           unversioned .so names).
#   auto    system when one is found, else wheels.
# 13.0 matches the R580 driver: candle JIT-compiles its kernels' PTX with the driver at run
# time, and a driver refuses PTX from a newer toolkit than its own.
#
# candle-kernels' build script (through cudaforge) runs nvcc on its .cu files even for
# `cargo check`, and cudarc's reads the CUDA version from `nvcc --version`. No GPU is
# needed to compile: CUDA_COMPUTE_CAP (default 90: H100/H200, built as sm_90a) replaces
# the nvidia-smi query. Linking (cargo build/test, not check) needs libcuda, cuBLAS(Lt),
# cuRAND, NVRTC and cudart: tarjuma_cuda_link_env finds them or links against a stub
# libcuda.so (soname libcuda.so.1) that the driver's real library replaces at run time.

TARJUMA_CUDA_WHEELS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)
# Libraries that a linked binary needs (cudarc's dynamic-linking: cublas, cublasLt, curand,
# nvrtc; candle-kernels: cudart). Same CUDA 13.0 update 2 release as the wheels above.
TARJUMA_CUDA_LINK_WHEELS=(
    nvidia-cublas==13.1.0.3
    nvidia-curand==10.4.0.35
    nvidia-cuda-nvrtc==13.0.88
)

tarjuma_cuda_die() {
    echo "error: $*" >&2
    exit 1
}

tarjuma_cuda_log() {
    echo "[cuda] $*" >&2
}

tarjuma_cuda_cache() {
    echo "${TARJUMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tarjuma}"
}

# Installs wheels (pinned NAME==VERSION arguments) into DIR once; DIR appears only complete.
tarjuma_cuda_pip_target() {
    local dir=$1
    shift
    [ -f "$dir/.complete" ] && return 0
    python3 -m pip --version >/dev/null 2>&1 ||
        tarjuma_cuda_die "python3 with pip is needed to install the CUDA toolkit wheels (or set CUDA_HOME to a CUDA 13 toolkit)"
    mkdir -p "$(dirname "$dir")"
    local tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    tarjuma_cuda_log "installing $* into $dir"
    if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --no-deps --only-binary=:all: --target "$tmp" "$@" >&2; then
        rm -rf "$tmp"
        tarjuma_cuda_die "pip could not install $* (is the package registry reachable?)"
    fi
    touch "$tmp/.complete"
    if [ -f "$dir/.complete" ]; then
        rm -rf "$tmp" # another run finished the same install first
    else
        rm -rf "$dir" # what an interrupted run left
        mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
    fi
}

# The cu13 tree inside a pip --target directory.
tarjuma_cuda_wheel_root() {
    local d
    for d in "$1"/nvidia/cu1*; do
        [ -x "$d/bin/nvcc" ] || [ -d "$d/lib" ] || continue
        echo "$d"
        return 0
    done
    return 1
}

# Links that make a wheel tree look like a toolkit install (idempotent).
tarjuma_cuda_fix_layout() {
    local root=$1 f
    mkdir -p "$root/targets/x86_64-linux"
    [ -e "$root/targets/x86_64-linux/include" ] || ln -sfn ../../include "$root/targets/x86_64-linux/include"
    [ -e "$root/targets/x86_64-linux/lib" ] || ln -sfn ../../lib "$root/targets/x86_64-linux/lib"
    [ -e "$root/lib64" ] || ln -sfn lib "$root/lib64"
    for f in "$root"/lib/lib*.so.*; do
        [ -e "$f" ] || continue
        [ -e "${f%%.so.*}.so" ] || ln -sfn "$(basename "$f")" "${f%%.so.*}.so"
    done
}

# Sets CUDA_HOME, CUDA_PATH, PATH, CUDA_COMPUTE_CAP and checks nvcc. Idempotent.
tarjuma_cuda_env() {
    local mode=${TARJUMA_CUDA_TOOLKIT:-auto} home="" nvcc=""
    case $mode in
    auto | system)
        if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
            home=$CUDA_HOME
        elif [ -n "${CUDA_PATH:-}" ] && [ -x "$CUDA_PATH/bin/nvcc" ]; then
            home=$CUDA_PATH
        elif nvcc=$(command -v nvcc 2>/dev/null); then
            home=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
        elif [ -x /usr/local/cuda/bin/nvcc ]; then
            home=/usr/local/cuda
        elif [ "$mode" = system ]; then
            tarjuma_cuda_die "TARJUMA_CUDA_TOOLKIT=system but no nvcc found (CUDA_HOME, PATH, /usr/local/cuda)"
        fi
        ;;
    wheels) ;;
    *) tarjuma_cuda_die "TARJUMA_CUDA_TOOLKIT must be auto, system or wheels (got '$mode')" ;;
    esac

    if [ -z "$home" ]; then
        local dir
        dir="$(tarjuma_cuda_cache)/cuda-toolkit/13.0.88-nvcc"
        tarjuma_cuda_pip_target "$dir" "${TARJUMA_CUDA_WHEELS[@]}"
        home=$(tarjuma_cuda_wheel_root "$dir") || tarjuma_cuda_die "no nvidia/cu13 tree in $dir (remove it and retry)"
        tarjuma_cuda_fix_layout "$home"
        TARJUMA_CUDA_FROM=wheels
    else
        TARJUMA_CUDA_FROM=system
    fi
    export CUDA_HOME=$home CUDA_PATH=$home
    case ":$PATH:" in *":$home/bin:"*) ;; *) export PATH="$home/bin:$PATH" ;; esac
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

    command -v "${NVCC_CCBIN:-g++}" >/dev/null 2>&1 ||
        tarjuma_cuda_die "nvcc needs a host C++ compiler: install g++ (apt-get install g++) or set NVCC_CCBIN"
    local version
    version=$(nvcc --version 2>&1) || tarjuma_cuda_die "$home/bin/nvcc does not run: $version"
    TARJUMA_CUDA_VERSION=$(sed -n 's/.*release \([0-9.]*\),.*/\1/p' <<<"$version")
    case $TARJUMA_CUDA_VERSION in
    13.0) ;;
    "") tarjuma_cuda_die "cannot read the CUDA version from: $version" ;;
    *) tarjuma_cuda_log "warning: nvcc is CUDA $TARJUMA_CUDA_VERSION, not 13.0; an R580 driver cannot load PTX from a newer toolkit" ;;
    esac
    tarjuma_cuda_log "CUDA $TARJUMA_CUDA_VERSION ($TARJUMA_CUDA_FROM) at $home, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
}

# Finds lib$1.so* in the toolkit, the driver's folders, the linker's cache or an installed
# Python package (nvidia/cu13/lib); prints its path.
tarjuma_cuda_find_lib() {
    local name=$1 d f
    local dirs=("$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib"
        /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib)
    if [ -n "${TARJUMA_CUDA_PY_LIBS:-}" ]; then dirs+=("$TARJUMA_CUDA_PY_LIBS"); fi
    for d in "${dirs[@]}"; do
        for f in "$d/lib$name.so" "$d"/lib"$name".so.[0-9]*; do
            [ -e "$f" ] && { echo "$f"; return 0; }
        done
    done
    f=$(ldconfig -p 2>/dev/null | awk -v n="lib$name.so" 'index($1, n) == 1 && $NF ~ /^\// {print $NF; exit}')
    [ -n "$f" ] && [ -e "$f" ] && { echo "$f"; return 0; }
    return 1
}

# For cargo build/test with --features cuda: a folder of lib*.so links (LIBRARY_PATH, for
# the linker) and LD_LIBRARY_PATH for running. Call after tarjuma_cuda_env.
tarjuma_cuda_link_env() {
    local linkdir lib path missing=() py
    linkdir="$(tarjuma_cuda_cache)/cuda-toolkit/link"
    mkdir -p "$linkdir"
    # Python packages that ship the libraries (a machine with PyTorch has them).
    for py in python3 /opt/torch/.venv/bin/python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        TARJUMA_CUDA_PY_LIBS=$("$py" - <<'EOF' 2>/dev/null || true
import glob, os, site, sys
paths = list(sys.path) + [site.getusersitepackages()]
for p in paths:
    for d in sorted(glob.glob(os.path.join(p, "nvidia", "cu1*", "lib"))):
        if glob.glob(os.path.join(d, "libcublas.so*")):
            print(d)
            raise SystemExit
EOF
        )
        [ -n "$TARJUMA_CUDA_PY_LIBS" ] && break
    done
    for lib in cublas cublasLt curand nvrtc cudart; do
        tarjuma_cuda_find_lib "$lib" >/dev/null || missing+=("$lib")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local dir
        dir="$(tarjuma_cuda_cache)/cuda-toolkit/13.0.88-libs"
        tarjuma_cuda_log "no system ${missing[*]}: using NVIDIA's wheels"
        tarjuma_cuda_pip_target "$dir" "${TARJUMA_CUDA_LINK_WHEELS[@]}" nvidia-cuda-runtime==13.0.96
        TARJUMA_CUDA_PY_LIBS=$(tarjuma_cuda_wheel_root "$dir")/lib ||
            tarjuma_cuda_die "no nvidia/cu13/lib in $dir (remove it and retry)"
    fi
    # The linker finds lib*.so in $linkdir; a binary finds the versioned names (the sonames,
    # libcublas.so.13...) in the folders they came from.
    local rundirs=""
    for lib in cublas cublasLt curand nvrtc cudart cuda; do
        if ! path=$(tarjuma_cuda_find_lib "$lib"); then
            [ "$lib" = cuda ] || tarjuma_cuda_die "lib$lib.so not found"
            # libcuda comes with the driver. Without one (a build-only machine), link against a
            # stub with the same soname; the driver's library replaces it at run time.
            tarjuma_cuda_stub_libcuda "$linkdir"
            tarjuma_cuda_log "libcuda: no driver here, linking against a stub ($linkdir/libcuda.so); the driver's libcuda.so.1 is loaded at run time"
            continue
        fi
        ln -sfn "$path" "$linkdir/lib$lib.so"
        tarjuma_cuda_log "lib$lib: $path"
        case ":$rundirs:" in *":$(dirname "$path"):"*) ;; *) rundirs="$rundirs${rundirs:+:}$(dirname "$path")" ;; esac
    done
    export LIBRARY_PATH="$linkdir${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$rundirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# A libcuda.so (soname libcuda.so.1) that defines every cu* function cuda.h declares, as
# empty functions; only for linking.
tarjuma_cuda_stub_libcuda() {
    local linkdir=$1 header
    header=$CUDA_HOME/include/cuda.h
    [ -f "$header" ] || tarjuma_cuda_die "no $header to make a libcuda stub from"
    [ -f "$linkdir/libcuda.so" ] && [ ! -L "$linkdir/libcuda.so" ] && [ "$linkdir/libcuda.so" -nt "$header" ] && return 0
    # Exported names: the functions cuda.h declares plus the versioned names (_v2, _ptds...)
    # its #defines map them to.
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$header" | sort -u |
        awk '{print "void " $1 "(void) {}"}' >"$linkdir/cuda-stub.c"
    cc -shared -fPIC -w -Wl,-soname,libcuda.so.1 -o "$linkdir/libcuda.so.tmp" "$linkdir/cuda-stub.c" ||
        tarjuma_cuda_die "could not build the libcuda stub"
    rm -f "$linkdir/libcuda.so"
    mv "$linkdir/libcuda.so.tmp" "$linkdir/libcuda.so"
}
