# syntax=docker/dockerfile:1
# icl-distill: `icld` (node dist/src/cli/main.js) with the native addon built for the portable x86-64
# baseline (the SIMD kernels carry target attributes and are picked at run time, native/cpu.c), plus
# the embedded data, studies and configs. Used by deploy/k8s/ and deploy/slurm/ (Apptainer/Podman).
#   docker build -t icl-distill:0.1.0 .
#   docker run --rm icl-distill:0.1.0 info
# Build args: NODE_VERSION (20), DEBIAN_RELEASE (bookworm). Runs as the image's non-root user
# `node` (uid 1000, gid 1000).
ARG NODE_VERSION=20
ARG DEBIAN_RELEASE=bookworm

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ libopenblas-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies in their own layer (cached while package*.json do not change); the package's own
# install/prepare scripts run below, explicitly, once the sources are there.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY binding.gyp tsconfig.json ./
COPY scripts/ scripts/
COPY native/ native/
COPY src/ src/
# The addon without -march=native (ICLD_MARCH unset: the image must run on any x86-64 node), the
# TypeScript, then the check: an addon that did not build or does not load fails the build here
# instead of shipping the reference backend. Dev dependencies go last.
RUN env -u ICLD_MARCH node scripts/build-native.mjs \
 && if grep -q -- '-march=native' build/icld_native.target.mk; then echo 'addon built with -march=native' >&2; exit 1; fi \
 && npx tsc -p tsconfig.json \
 && node scripts/check-native.mjs --gemm openblas \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim
# Run-time libraries of the addon only (OpenBLAS, OpenMP), and tini: node as PID 1 would ignore
# SIGTERM (a deleted or pre-empted study pod would wait for SIGKILL). No compiler, no network needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./
# node_modules after the prune: the run-time dependencies (none today) without the dev ones.
COPY --from=build /app/node_modules/ node_modules/
COPY --from=build /app/dist/src/ dist/src/
COPY --from=build /app/build/Release/icld_native.node build/Release/
COPY --from=build /app/scripts/check-native.mjs scripts/
COPY src/server/web/ src/server/web/
COPY data/ data/
COPY studies/ studies/
COPY configs/ configs/
# `icld` on PATH; runs/ (icld start's default) and /data (the shared volume's mount point) writable
# by the non-root user; the check again, now with only the run-time libraries installed.
RUN chmod 0755 dist/src/cli/main.js \
 && ln -s /app/dist/src/cli/main.js /usr/local/bin/icld \
 && mkdir -p /app/runs /data && chown node:node /app/runs /data \
 && node scripts/check-native.mjs --gemm openblas
USER node
ENV NODE_ENV=production
ENTRYPOINT ["/usr/bin/tini", "--", "icld"]
CMD ["--help"]
