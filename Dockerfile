# syntax=docker/dockerfile:1
# One image for the three services (and the worker agent they start): install + build once, then a
# runtime stage with production dependencies only. Pick the service with the SERVICE build arg
# (default orchestrator) or with the container command:
# node --import /app/packages/platform/dist/telemetry/register.js services/<svc>/dist/main.js.

FROM node:20-bookworm-slim AS build
# gcc: pnpm build compiles the worker's spawner (packages/worker/spawner.c); the runtime stage has the same glibc.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
  && npm install -g pnpm@10.34.9 && pnpm --version
WORKDIR /app
# Manifests first, so a code change does not invalidate the dependency layer.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml tsconfig.base.json ./
COPY packages/types/package.json packages/types/
COPY packages/platform/package.json packages/platform/
COPY packages/worker/package.json packages/worker/
COPY packages/cli/package.json packages/cli/
COPY services/orchestrator/package.json services/orchestrator/
COPY services/scheduler/package.json services/scheduler/
COPY services/worker-manager/package.json services/worker-manager/
COPY bench/package.json bench/
RUN pnpm install --frozen-lockfile
COPY packages packages
COPY services services
RUN pnpm build
# Drop dev dependencies (typescript, vitest, @types) from the tree the runtime stage copies.
RUN CI=true pnpm install --frozen-lockfile --prod --config.confirmModulesPurge=false

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production HODEI_HOST=0.0.0.0
# bash: job scripts start with #!/usr/bin/env bash; tini reaps what jobs leave behind.
RUN apt-get update && apt-get install -y --no-install-recommends tini bash ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
ARG SERVICE=orchestrator
ENV HODEI_SERVICE=${SERVICE}
USER node
EXPOSE 8080 8081 8082
ENTRYPOINT ["/usr/bin/tini", "--"]
# The telemetry preload exports traces when OTEL_EXPORTER_OTLP_ENDPOINT is set and does nothing otherwise.
CMD ["sh", "-c", "exec node --import /app/packages/platform/dist/telemetry/register.js services/${HODEI_SERVICE}/dist/main.js"]
