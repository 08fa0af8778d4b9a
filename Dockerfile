# The edge image node in a container: `docker build -t edge .` then
#   docker run -d -p 8080:8080 -v edge-cache:/var/lib/edge/cache \
#     -v "$PWD/edge.toml:/etc/edge/edge.toml:ro" edge
# See docs/deploy.md. The config is named by EDGE_CONFIG; secrets come in as environment variables.

# -- build: the package and its dependencies (pyvips[binary] ships libvips) into a virtualenv ------
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/edge
COPY setup.cfg pyproject.toml README.md ./
COPY edge ./edge
COPY plugins ./plugins
# the optional extras baked in: `faces` (OpenCV's face detector, for `fo-face`; about 60 MB); build
# with `--build-arg EXTRAS=` for an image without it (`fo-face` is then a 400 naming the extra)
ARG EXTRAS=faces
RUN /opt/edge/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

# -- run: the virtualenv alone, as an unprivileged user ------------------------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin edge \
    && mkdir -p /var/lib/edge/cache \
    && chown edge /var/lib/edge/cache
COPY --from=build /opt/edge /opt/edge
COPY deploy/docker/edge.toml /etc/edge/edge.toml
ENV EDGE_CONFIG=/etc/edge/edge.toml \
    PATH=/opt/edge/bin:$PATH \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/edge/cache"]
EXPOSE 8080 9480
USER edge
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/_edge/health', timeout=4).status != 200)"]
CMD ["edge", "serve"]
