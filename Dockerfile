# syncer's container: `syncer run`, the daemon, talking to a real PostgreSQL (DATABASE_URL).
#
# Two stages: the first builds the package and its dependencies into a virtualenv (a full
# Python image, so a dependency without a wheel can still compile); the second copies only
# that virtualenv into a slim image: no compiler, no pip cache, no sources, a non-root user.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY syncer ./syncer
COPY migrations ./migrations
# Pinned by constraints.txt; not the `embedded` extra: the container always has a server.
RUN python -m venv /opt/syncer && /opt/syncer/bin/pip install -c constraints.txt .

FROM python:${PYTHON_VERSION}-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin syncer
COPY --from=build /opt/syncer /opt/syncer
ENV PATH=/opt/syncer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNC_HTTP_PORT=8080 \
    SYNC_LOG_FORMAT=json
WORKDIR /app
USER syncer
EXPOSE 8080
# /healthz answers 503 until every endpoint has synced within SYNC_HEALTHY_INTERVALS intervals;
# urlopen raises on 503 or no answer, so the check fails. The slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SYNC_HTTP_PORT', '8080') + '/healthz', timeout=4)"]
# Applies migrations at start, then syncs every SYNC_INTERVAL; SIGTERM stops it cleanly.
CMD ["syncer", "run"]
