"""Object storage (S3 via the minio client), metadata DB, hash chain, write-ahead upload queue."""
