#!/usr/bin/env bash
# Starts Triton Inference Server (the tritonserver binary of the nvidia-pytriton wheel) on a
# model repository written by bench/triton/repository.py, for bench/run.sh and
# tests/interop/test_triton_upstream.py.
#
#   serve.sh VENV REPOSITORY SCRATCH HTTP_PORT GRPC_PORT METRICS_PORT
#
# VENV has nvidia-pytriton, onnxruntime and numpy (`make triton` makes .venv-triton). PyTriton's own Python API is not used: the
# binary is run directly. Its Python backend needs, in one folder given as --backend-directory:
# libtriton_python.so, triton_python_backend_utils.py and the Python 3.11 stub (found next to
# the library). The stub links libpython3.11.so: LD_LIBRARY_PATH points at the venv's base
# interpreter's lib/ (and the wheel's bundled libraries) and PYTHONHOME at that interpreter,
# else the system's libpython would meet another stdlib. The stub ignores PYTHONPATH, so the
# venv's site-packages reach model.py as BENCH_TRITON_SITE_PACKAGES. Warnings about CUDA and
# DCGM at start are expected on a machine without GPU.
set -euo pipefail

venv=$1 repository=$2 scratch=$3 http_port=$4 grpc_port=$5 metrics_port=$6
python=$venv/bin/python
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
home=$("$python" -c 'import sys; print(sys.base_prefix)')
libdir=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
triton=$site/pytriton/tritonserver
[[ -x $triton/bin/tritonserver ]] || {
  echo "serve.sh: no $triton/bin/tritonserver: is nvidia-pytriton installed in $venv? (make triton)" >&2
  exit 1
}
[[ -e $libdir/libpython$version.so.1.0 ]] || {
  echo "serve.sh: $libdir has no libpython$version.so.1.0; the Python backend's stub needs a shared" \
    "libpython (a Python built with --enable-shared, or the distribution's libpython$version package)" >&2
  exit 1
}
[[ -x $triton/python_backend_stubs/$version/triton_python_backend_stub ]] || {
  echo "serve.sh: the wheel has no Python backend stub for Python $version" >&2
  exit 1
}

backend=$scratch/backends/python
mkdir -p "$backend"
cp "$triton/backends/python/libtriton_python.so" "$triton/backends/python/triton_python_backend_utils.py" \
  "$triton/python_backend_stubs/$version/triton_python_backend_stub" "$backend/"

export LD_LIBRARY_PATH=$libdir:$site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONHOME=$home
export BENCH_TRITON_SITE_PACKAGES=$site
exec "$triton/bin/tritonserver" \
  --model-repository="$repository" \
  --backend-directory="$scratch/backends" \
  --cache-directory="$triton/caches" \
  --http-address=127.0.0.1 --http-port="$http_port" \
  --grpc-address=127.0.0.1 --grpc-port="$grpc_port" \
  --metrics-address=127.0.0.1 --metrics-port="$metrics_port" \
  --exit-on-error=true --strict-readiness=true \
  --log-verbose=0 --log-info=true
