# lookout-emulator: the Amazon Lookout for Vision API, its S3 and the web console on one port.
#
#   docker build -t lookout-emulator .
#   docker run --rm -p 5010:5010 -v lookout-data:/data \
#     -v "$PWD/credentials:/run/secrets/lookout-credentials:ro" \
#     -e LOOKOUT_CREDENTIALS_FILE=/run/secrets/lookout-credentials lookout-emulator
#
# The credentials file (AWS shared-credentials format, readable by uid 10001) holds the access keys
# that may call: every API and S3 request must be signed with one of them and the console asks to
# sign in (README: Access control). Without it the container is open to anyone who reaches the port.
# Then point clients at it: AWS_ENDPOINT_URL=http://127.0.0.1:5010 (console: http://127.0.0.1:5010/console).
# The volume keeps projects, datasets, trained models and the embedded S3 across containers.
# Settings are the `lookout-emulator serve` flags or LOOKOUT_* variables, e.g. -e LOOKOUT_REGION=eu-west-1.
#
# Nothing is downloaded at run time: the default backbone's (EfficientNet-Lite0) ImageNet weights are
# installed with the package. A torchvision backbone's weights (resnet18, wide_resnet50_2) can be baked
# in for air-gapped sites: put the .pth/.safetensors file in docker/weights/ and build with
#   docker build --build-arg BACKBONE_WEIGHTS=resnet18-f37072fd.pth -t lookout-emulator .
# which sets LOOKOUT_BACKBONE_WEIGHTS, where the engine looks for that file.
FROM python:3.11-slim

# CPU-only PyTorch wheels: the CUDA ones are gigabytes the emulator never uses.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG BACKBONE_WEIGHTS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/lookout-emulator
COPY pyproject.toml README.md ./
COPY emulator ./emulator
COPY engine ./engine
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" .

COPY docker/weights/ ./weights/
RUN if [ -n "${BACKBONE_WEIGHTS}" ] && [ ! -f "weights/${BACKBONE_WEIGHTS}" ]; then \
        echo "BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS}: put that file in docker/weights/ first" >&2; exit 1; \
    fi \
    && useradd --system --uid 10001 --home-dir /data lookout \
    && mkdir -p /data && chown lookout /data

# Empty unless BACKBONE_WEIGHTS is given (the engine treats an empty value as unset).
ENV LOOKOUT_BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:+/opt/lookout-emulator/weights/}${BACKBONE_WEIGHTS} \
    LOOKOUT_HOST=0.0.0.0 \
    LOOKOUT_PORT=5010 \
    LOOKOUT_DATA_DIR=/data

USER lookout
VOLUME ["/data"]
EXPOSE 5010
ENTRYPOINT ["lookout-emulator"]
CMD ["serve"]
