# nanochat-rs in a container: build the `nanochat` binary, then a slim runtime with only it.
#
#   docker build -t nanochat .                                          # simulated models only
#   docker build -t nanochat --build-arg MODEL=sdobson/nanochat .       # bake a hub model in
#   docker build -t nanochat --build-arg MODEL=sdobson/nanochat --build-arg MODEL_DTYPE=bf16 .
#   docker run -p 8000:8000 nanochat                                    # OpenAI API on :8000/v1
#
# A private or gated MODEL needs a token, passed as a build secret (never stored in a layer):
#   docker build --secret id=hf_token,env=HF_TOKEN --build-arg MODEL=owner/repo .
# Models pulled at run time (`serve --model hf:…`) go to /models: mount a volume there to keep them.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The release profile is tuned (LTO, one codegen unit); the CPU kernels pick AVX-512/AVX2 at
# run time, so the image runs on any x86-64 machine.
RUN cargo build --release --locked -p nanochat-cli \
    && install -m 0755 target/release/nanochat /usr/local/bin/nanochat

FROM debian:bookworm-slim AS runtime
# ca-certificates tracks the distribution's trust store: pinning its version would freeze it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/nanochat nanochat \
    && mkdir /models
COPY --from=build /usr/local/bin/nanochat /usr/local/bin/nanochat
ENV NANOCHAT_BASE_DIR=/models

# Optional: a nanochat release pulled from the hub at build time (served as sft-d<N>), and
# converted to our format (f32, bf16, q8_0 or q4k) so it loads in a second.
ARG MODEL=""
ARG MODEL_DTYPE=""
ARG HF_ENDPOINT=""
RUN --mount=type=secret,id=hf_token,required=false \
    if [ -n "$MODEL" ]; then \
      token=""; if [ -r /run/secrets/hf_token ]; then token="$(cat /run/secrets/hf_token)"; fi; \
      HF_TOKEN="$token" HF_ENDPOINT="${HF_ENDPOINT:-https://huggingface.co}" \
        nanochat pull "$MODEL" ${MODEL_DTYPE:+--convert --dtype "$MODEL_DTYPE"}; \
    fi \
    && chown -R 10001 /models
USER 10001

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["nanochat"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
