CREATE TABLE IF NOT EXISTS query_stats_minute (
  database_id BIGINT UNSIGNED NOT NULL,
  fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  window_start DATETIME NOT NULL,
  -- Vitess hash vindex of database_id: lets comparators bucket rows the same way on any shard map.
  keyspace_id BINARY(8) NOT NULL,
  query_count BIGINT UNSIGNED NOT NULL,
  total_duration_us BIGINT UNSIGNED NOT NULL,
  max_duration_us BIGINT UNSIGNED NOT NULL,
  rows_read BIGINT UNSIGNED NOT NULL,
  rows_returned BIGINT UNSIGNED NOT NULL,
  error_count BIGINT UNSIGNED NOT NULL,
  -- DDSketch, reference binary encoding; merged in the consumer in offset order.
  latency_sketch BLOB NOT NULL,
  PRIMARY KEY (database_id, fingerprint, window_start),
  KEY by_window (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS query_stats_hour (
  database_id BIGINT UNSIGNED NOT NULL,
  fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  window_start DATETIME NOT NULL,
  -- Vitess hash vindex of database_id: lets comparators bucket rows the same way on any shard map.
  keyspace_id BINARY(8) NOT NULL,
  query_count BIGINT UNSIGNED NOT NULL,
  total_duration_us BIGINT UNSIGNED NOT NULL,
  max_duration_us BIGINT UNSIGNED NOT NULL,
  rows_read BIGINT UNSIGNED NOT NULL,
  rows_returned BIGINT UNSIGNED NOT NULL,
  error_count BIGINT UNSIGNED NOT NULL,
  -- DDSketch, reference binary encoding; merged in the consumer in offset order.
  latency_sketch BLOB NOT NULL,
  PRIMARY KEY (database_id, fingerprint, window_start),
  KEY by_window (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS slow_queries (
  -- Where the event sat in the topic: the event's identity, so a redelivery can never add a row.
  src_partition INT NOT NULL,
  src_offset BIGINT NOT NULL,
  occurred_at DATETIME(6) NOT NULL,
  database_id BIGINT UNSIGNED NOT NULL,
  fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  keyspace_id BINARY(8) NOT NULL,
  proxy_id VARCHAR(255) NOT NULL,
  duration_us BIGINT UNSIGNED NOT NULL,
  rows_read BIGINT UNSIGNED NOT NULL,
  rows_returned BIGINT UNSIGNED NOT NULL,
  error_text TEXT NULL,
  query_text MEDIUMTEXT NOT NULL,
  -- JSON array of table names.
  tables_used TEXT NOT NULL,
  -- occurred_at is in the key only because MySQL requires the partitioning column in every unique key.
  PRIMARY KEY (src_partition, src_offset, occurred_at),
  KEY by_database (database_id, occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS query_patterns (
  database_id BIGINT UNSIGNED NOT NULL,
  fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  keyspace_id BINARY(8) NOT NULL,
  normalized_sql MEDIUMTEXT NOT NULL,
  -- JSON array of table names.
  tables_used TEXT NOT NULL,
  -- Merge rule (consumer and copier alike): first_seen = min, last_seen = max; the text of the
  -- earliest sighting wins (ties: the smaller text), so writers commute.
  first_seen DATETIME(3) NOT NULL,
  last_seen DATETIME(3) NOT NULL,
  PRIMARY KEY (database_id, fingerprint)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
