# The crossover image: operator and router in one (the router pods run `crossover router`). Only the runtime: the test
# rig (operator/crossover_lab) is not copied, and no extra is installed, so neither rich nor matplotlib is in it.
# Build: docker build -t ghcr.io/crossover-dev/crossover:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY costpolicy costpolicy
COPY operator/crossover operator/crossover
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin crossover
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["crossover"]
CMD ["operator"]
