# The fedami image: the SuperLink, every hospital's SuperNode and the coordinator run it.
# CPU torch from the build context (deploy/wheels, `make image-context`), the rest from the package index at
# the versions the tests ran with (deploy/wheels/constraints.txt); nothing is downloaded at run time.
FROM python:3.11-slim

WORKDIR /app
COPY deploy/wheels/ /wheels/
RUN pip install --no-cache-dir /wheels/torch-*.whl
COPY pyproject.toml README.md ./
# The dependencies in a layer of their own, so a source change rebuilds in seconds.
RUN pip install --no-cache-dir -c /wheels/constraints.txt . && pip uninstall -y fedami && rm -rf build *.egg-info
COPY common/ common/
COPY client/ client/
COPY server/ server/
COPY sim/ sim/
RUN pip install --no-cache-dir --no-deps . && python -c "import client.app, server.app"

ENV FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    PYTHONUNBUFFERED=1 \
    FEDAMI_APP_DIR=/app
CMD ["fedami", "--help"]
