# The gpuscale operator image (the trainer image is built from trainer-image/Dockerfile).
#
#   docker build -t gpuscale/operator:0.1.0 .
#
# The build context is the repository root; .dockerignore keeps it to pyproject.toml and
# operator/. manifests/operator/30-deployment.yaml runs this image as user 1000 with a
# read-only root filesystem, so nothing is written outside /tmp at run time.

# NOTE: pinned by tag only; pin by digest as well where reproducible builds matter.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The runtime dependencies, with the exact pins of pyproject.toml's [project] dependencies, so
# the image and the development venv run the same versions.
COPY pyproject.toml /tmp/build/pyproject.toml
RUN set -eux; \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/build/requirements.txt; \
    pip install -r /tmp/build/requirements.txt; \
    rm -rf /tmp/build

RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin gpuscale

COPY operator/gpuscale/ /opt/gpuscale/gpuscale/
RUN python -m compileall -q /opt/gpuscale/gpuscale
ENV PYTHONPATH=/opt/gpuscale

USER 1000:1000
WORKDIR /tmp

# The Deployment sets the full command (kopf run -m gpuscale.controller.handlers ...); this
# default runs the same handlers for a quick `docker run` against a mounted kubeconfig.
ENTRYPOINT ["kopf", "run", "-m", "gpuscale.controller.handlers"]
CMD ["--all-namespaces"]
