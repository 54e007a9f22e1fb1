# CPU image of `lmforge serve`: an OpenAI-compatible server for one model folder mounted at /model.
#
#   docker build -t lmforge:cpu .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/sft:/model:ro" lmforge:cpu
#   docker run --rm -p 8000:8000 -v "$PWD/runs/sft:/model:ro" lmforge:cpu --api-key "$KEY" --max-batch-size 16
#
# Arguments after the image name are added to `lmforge serve --host 0.0.0.0 --model /model`. The HEALTHCHECK asks
# port 8000 inside the container, so keep the default --port and map it with `-p HOST:8000`.
# Build arguments: TORCH_VERSION (default 2.13.0, as the Makefile), EXTRAS (e.g. `embeddings` for
# sentence-transformers behind --embedding-model). A GPU image: see docs/serving.md.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/tmp/hf

# The CPU wheel first, from PyTorch's CPU index: `pip install .` then finds torch satisfied and does not pull the
# CUDA build (several GB) from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /opt/lmforge
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".${EXTRAS:+[${EXTRAS}]}" \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin lmforge

USER lmforge
WORKDIR /home/lmforge
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["lmforge", "serve", "--host", "0.0.0.0", "--model", "/model"]
