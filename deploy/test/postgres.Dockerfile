# A stand-in for the official `postgres` image, for the compose test only: no registry is
# reachable where this project is built and tested, Debian's packages are. It honours the parts
# of the official image's interface that deploy/compose.yaml uses: POSTGRES_USER, POSTGRES_DB,
# POSTGRES_PASSWORD_FILE, the data directory /var/lib/postgresql/data, and `pg_isready`.
FROM docker.io/library/debian:bookworm-slim
# checkov:skip=CKV_DOCKER_2:a test stand-in; Tokenmint waits for the database itself
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
# The package picks the postgres user's uid at install time, so only its name is known here.
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
