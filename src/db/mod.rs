//! Postgres access (sqlx): pools, embedded cluster, queries. Migrations live in `migrations/`.
