# syntax=docker/dockerfile:1
# Build: docker build -t kenes .   Run: see compose.yaml (PostgreSQL + Kenes).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /srv/kenes kenes \
 && mkdir /srv/kenes/var && chown kenes:kenes /srv/kenes/var
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 KENES_ENV=production
WORKDIR /srv/kenes
USER kenes
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["kenes", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
