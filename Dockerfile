# One image for the API and the workers; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY schemas schemas
COPY core core
COPY infra infra
COPY streams streams
COPY agents agents
COPY api api
COPY control control
RUN pip install --no-cache-dir . && mugpos licences
USER nobody
CMD ["mugpos", "--help"]
