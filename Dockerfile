# circuit-bench, CPU image. Build: docker build -t circuit-bench .
# Run:   docker run --rm -v "$PWD/results:/app/results" circuit-bench benchmark --cases 3 4 11 --methods eap eap-ig
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# torch first, from the CPU index, so that nothing pulls a multi-GB CUDA build
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md main.py ./
COPY core ./core
COPY cases ./cases
COPY methods ./methods
COPY evaluations ./evaluations
COPY benchmark ./benchmark

RUN pip install ".[hub]" "torch==2.13.0" && circuit-bench cases list --kind toy

ENTRYPOINT ["circuit-bench"]
CMD ["--help"]
