# leadscore worker image: `docker build -t leadscore .` (docker-compose.yml builds it too).
# Configure with LEADSCORE_* variables (`leadscore run --help` lists them).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 leadscore
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER leadscore
EXPOSE 9400
# The worker leaves its consumer group and commits on SIGTERM (`docker stop`); give it
# more than --shutdown-timeout (30 s): `docker stop -t 40`, compose's stop_grace_period.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LEADSCORE_METRICS_PORT', '9400'), timeout=2)"
ENTRYPOINT ["leadscore"]
CMD ["run"]
