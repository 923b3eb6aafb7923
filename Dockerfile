# circuit-bench, CPU image (also the image of a Ray cluster's nodes when built with the ray extra).
#   docker build -t circuit-bench .                                      # core + the hub extra
#   docker build --build-arg EXTRAS=hub,ray -t circuit-bench:ray .       # + Ray (docs/ray.md)
# Run as your own user, so that the results on the host are yours (they are written 0644 in any case):
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/results:/app/results" circuit-bench \
#       benchmark --cases 3 4 11 --methods eap eap-ig
FROM python:3.11-slim

ARG EXTRAS=hub
ARG UID=1000
ARG GID=1000

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    PIP_NO_CACHE_DIR=1 \
    XDG_CACHE_HOME=/tmp/.cache

# an unprivileged user runs everything (its uid/gid default to the usual first host user's)
RUN groupadd --gid "${GID}" bench \
    && useradd --uid "${UID}" --gid bench --create-home --home-dir /home/bench --shell /bin/bash bench

WORKDIR /app

# torch first, from the CPU index, so that nothing pulls a multi-GB CUDA build
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md main.py ./
COPY core ./core
COPY training ./training
COPY cases ./cases
COPY methods ./methods
COPY evaluations ./evaluations
COPY benchmark ./benchmark

# the project itself: its dependencies are bounded in pyproject.toml, torch stays the CPU build
# hadolint ignore=DL3013
RUN pip install ".[${EXTRAS}]" "torch==2.13.0" \
    && mkdir -p /app/results \
    && chown bench:bench /app/results

USER ${UID}:${GID}
RUN circuit-bench cases list --kind toy

ENTRYPOINT ["circuit-bench"]
CMD ["--help"]
