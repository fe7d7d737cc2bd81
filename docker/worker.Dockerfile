# GPU worker image: CUDA torch + torchvision (so every controlnet-aux annotator imports) + framefarm.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
WORKDIR /opt/framefarm
COPY pyproject.toml README.md ./
COPY framefarm ./framefarm
# torch comes from the base image; the annotators extra adds controlnet-aux (torchvision/timm are already usable).
RUN pip install --no-cache-dir ".[annotators,s3]"
ENV PYTHONUNBUFFERED=1
