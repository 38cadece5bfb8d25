# revicom-dispatch: one image for the worker pod, the callback receiver, the sandbox, Flower
# and the CLI.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config config
COPY tasks tasks
COPY worker worker
COPY receiver receiver
COPY cli cli
COPY devenv devenv
COPY sandbox sandbox
COPY ops ops
COPY bench bench
COPY chaos chaos
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 dispatch
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER dispatch
WORKDIR /home/dispatch
ENV PYTHONUNBUFFERED=1
# 9808: worker metrics, 8090: callback receiver, 8080: sandbox, 5555: Flower
EXPOSE 9808 8090 8080 5555
ENTRYPOINT ["revicom-dispatch"]
CMD ["worker", "--loglevel", "INFO"]
