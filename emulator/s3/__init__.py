"""S3 beside the API: the `ObjectStore` service code uses, its embedded (moto) and external
implementations, the disk mirror of the embedded store and the routing of S3 requests."""
